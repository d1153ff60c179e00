"""Benchmark: ten years of scans as dynamic partitions, in the UI and the gap sensor.

Each scan is a partition of every per-scan step, so a standing pipeline over CCAT's several
hundred thousand scans holds that many partitions per step. For each size it builds the
pipeline of ``bench/gap_sensor.py`` (``calibrate -> baseline`` per scan, ``grid`` per
source+line; one package per scan) in a scratch ops-db, every pair waiting in a long cooldown
(``--reduced``: up to date instead, slow to generate), and, on a Dagster instance of its own on
PostgreSQL (the production ``deploy/dagster.postgres.yaml``), measures:

- ``partitions_sync_s``: registering every sub-group as a partition, as ``ccat-wm partitions
  sync`` and the sensors do (only missing keys, at most 1,000 per request);
- ``materialize_events_s``: writing one materialization for ``--materialized`` of the scans of
  each per-scan step (batched; not a figure of the product, only set-up), and with
  ``--retired N`` for N more scans whose keys are no partitions: the history a partition set
  keeps in the event log once reduced scans are retired from it (the design in
  ``docs/scale.md``);
- the gap sensor on a real ``dagster-daemon``: duration of its ticks (the instance's tick
  records: the daemon's own path, through the code server's gRPC) and the peak memory of the
  daemon and of the code server that evaluates the sensor;
- a real ``dagster-webserver``: each GraphQL operation of the asset catalog and of a per-scan
  step's asset page (``bench/ui_queries.py``: the documents of the installed UI), first call
  and median of ``--repeats``, each page's queries also sent at once as a browser does; and
  the peak memory of the webserver and its code server.

Prints one JSON document to stdout, progress on stderr:

    python -m bench.partitions --scans 100000,400000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from bench import ui_queries
from bench.daemon_runs import POSTGRES_INSTANCE_YAML, stack_env
from bench.gap_sensor import (
    PIPELINE,
    T0,
    add_observations,
    log,
    postgres_schema,
    spec,
    standing_state,
)
from bench.machine import describe
from bench.meter import children_by_parent
from bench.scratch_db import add_database_argument, scratch_postgres_database
from bench.targets import at_most, figure
from ccat_assets.dagster_face.catalog import load_catalog
from ccat_assets.opsdb.migrate import upgrade
from ccat_assets.opsdb.session import dispose_engines, session_scope
from ccat_assets.settings import get_settings
from ccat_assets.specs.apply import apply_spec_set, known_objects
from ccat_assets.specs.spec import validate_spec_files
from examples.demo import BIN, ROOT, start_daemon, stop_daemon

#: The issue's goal: every page of the UI answers within a second at this many scans.
TARGET_SCANS = 400_000
MAX_PAGE_S = 1.0
PER_SCAN_STEPS = ("calibrate", "baseline")
EVENT_BATCH = 1000


#: Longer than the age of any generated package: every pair waits in its cooldown.
TEN_YEARS_S = 10 * 366 * 86400


@contextmanager
def waiting_state(base_url: str, n_scans: int) -> Iterator[int]:
    """A scratch ops-db holding the standing pipeline over ``n_scans`` scans (one package
    each), nothing reduced yet and every step in a cooldown longer than the benchmark: each
    tick evaluates every pair and launches nothing. Seconds to build at any size, where an
    up-to-date history (``--reduced``) takes many minutes at hundreds of thousands of scans
    on a small machine. Yields 0 (completed runs)."""
    with postgres_schema(base_url) as url, tempfile.TemporaryDirectory() as tmp:
        os.environ.update({"CCAT_OPS_DB_URL": url, "CCAT_WORKFLOW_MANAGER_HOME": tmp,
                           "CCAT_WORKFLOW_MANAGER_PROCESSING_LOCATION_ID": "bench-processing"})
        get_settings.cache_clear()
        dispose_engines()
        upgrade(url)
        document = spec()
        for step in document["pipelines"][0]["steps"]:
            step["cooldown_seconds"] = TEN_YEARS_S
        path = Path(tmp) / "bench.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        log(f"[{n_scans} scans] generating {n_scans} packages, nothing reduced")
        with session_scope() as session:
            apply_spec_set(session, validate_spec_files([path], known_objects(session)))
            add_observations(session, 0, n_scans, T0, packages_per_scan=1)
        yield 0


def instance_config(dagster_url: str) -> dict[str, Any]:
    """The production instance config, its storage the scratch database."""
    config = yaml.safe_load(POSTGRES_INSTANCE_YAML.read_text())
    url = sa.make_url(dagster_url).set(drivername="postgresql+psycopg2")
    config["storage"] = {"postgres": {"postgres_url": url.render_as_string(
        hide_password=False)}}
    return config


def scan_keys(n_scans: int) -> list[str]:
    """The per-scan sub-group keys, as the sensors resolve them."""
    from sensors.partitions import subgroup_keys

    with session_scope() as session:
        wanted = subgroup_keys(session, load_catalog(session))
    keys = sorted(wanted[f"{PIPELINE}__executed_obs_unit"])
    assert len(keys) == n_scans, (len(keys), n_scans)
    return keys


def write_materializations(instance: Any, keys: list[str]) -> float:
    """One materialization per key and per-scan step, stored in batches (the event a run's
    materialization writes, without the run); seconds taken."""
    import dagster as dg
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.events.log import EventLogEntry
    from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

    start = time.perf_counter()
    for step in PER_SCAN_STEPS:
        for i in range(0, len(keys), EVENT_BATCH):
            entries = [EventLogEntry(
                error_info=None, level=logging.INFO, user_message="", run_id=RUNLESS_RUN_ID,
                timestamp=time.time(), dagster_event=DagsterEvent(
                    event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                    job_name=RUNLESS_JOB_NAME, event_specific_data=StepMaterializationData(
                        dg.AssetMaterialization(asset_key=["ccat", PIPELINE, step],
                                                partition=key,
                                                tags={"dagster/data_version": key}))))
                for key in keys[i:i + EVENT_BATCH]]
            instance.event_log_storage.store_event_batch(entries)
    return time.perf_counter() - start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process's group (started with a session of its own), SIGKILL after
    30 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def code_server(home: Path, env: dict[str, str], standalone: bool,
                timeout_s: float) -> Iterator[Path]:
    """The workspace file the daemon and webserver load: ``workspace.yaml`` (each starts a
    code server of its own, the daemon a new one every minute), or, ``standalone``, one
    ``dagster code-server start`` shared by both, as ``deploy/workspace.grpc.yaml`` runs it."""
    if not standalone:
        yield ROOT / "workspace.yaml"
        return
    port = free_port()
    log_file = open(home / "code-server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(  # noqa: S603 - fixed argv
        [str(BIN / "dagster"), "code-server", "start", "-m", "ccat_assets.definitions",
         "-h", "127.0.0.1", "-p", str(port)], cwd=ROOT, env=env, stdout=log_file,
        stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        # The image's HEALTHCHECK; a client in this process would print every refused
        # connection to stdout, where the benchmark's JSON goes.
        health = [str(BIN / "dagster"), "api", "grpc-health-check", "-h", "127.0.0.1",
                  "-p", str(port)]
        while subprocess.run(health, env=env, capture_output=True,  # noqa: S603
                             check=False).returncode != 0:
            if process.poll() is not None:
                raise RuntimeError("the code server exited; see code-server.log")
            if time.monotonic() > deadline:
                raise RuntimeError("the code server did not serve in time")
            time.sleep(0.5)
        workspace = home / "workspace.yaml"
        workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": {
            "host": "127.0.0.1", "port": port, "location_name": "ccat_assets.definitions"}}]}))
        yield workspace
    finally:
        stop_group(process)
        log_file.close()


@contextmanager
def webserver(home: Path, env: dict[str, str],
              workspace: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    log_file = open(home / "webserver.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(  # noqa: S603 - fixed argv
        [str(BIN / "dagster-webserver"), "-w", str(workspace), "-h", "127.0.0.1",
         "-p", str(port)], cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        stop_group(process)
        log_file.close()


def wait_for_location(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Until the webserver answers and its code location is loaded."""
    query = ('{ workspaceOrError { ... on Workspace { locationEntries { name '
             'locationOrLoadError { __typename } } } } }')
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("dagster-webserver exited")
        try:
            request = urllib.request.Request(f"{url}/graphql", data=json.dumps(
                {"query": query}).encode(), headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                entries = json.loads(response.read())["data"]["workspaceOrError"][
                    "locationEntries"]
            kinds = {e["locationOrLoadError"]["__typename"] for e in entries
                     if e["locationOrLoadError"]}
            if kinds == {"RepositoryLocation"}:
                return
            if "PythonError" in kinds:
                raise RuntimeError("the code location failed to load in dagster-webserver")
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"dagster-webserver not ready within {timeout_s:.0f} s")


def process_tree_memory(root_pid: int) -> list[dict[str, Any]]:
    """Peak (VmHWM) and current RSS of a process and its descendants, in MB, with a short
    name: the peak is the kernel's own high-water mark, so no sample can miss it."""
    children = children_by_parent()
    rows, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            status = dict(line.split(":", 1) for line in
                          (Path("/proc") / str(pid) / "status").read_text().splitlines())
            argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [Path(a.decode()).name for a in argv[:7] if a]
        rows.append({"process": " ".join(words), "peak_rss_mb": _mb(status.get("VmHWM")),
                     "rss_mb": _mb(status.get("VmRSS"))})
    return rows


def _mb(value: str | None) -> float | None:
    return round(int(value.split()[0]) / 1024, 1) if value else None


def sensor_ticks(instance: Any, name: str) -> list[dict[str, Any]]:
    """The sensor's finished ticks, oldest first: status and seconds."""
    from dagster._core.scheduler.instigation import InstigatorType

    state = next((s for s in instance.all_instigator_state(
        instigator_type=InstigatorType.SENSOR) if s.instigator_name == name), None)
    if state is None:
        return []
    ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=50)
    return [{"status": t.status.value, "seconds": round(t.end_timestamp - t.timestamp, 3),
             "error": t.error.message.splitlines()[0] if t.error else None}
            for t in reversed(ticks) if t.end_timestamp]


def wait_for_ticks(instance: Any, name: str, n: int, daemon: subprocess.Popen[bytes],
                   timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError("dagster-daemon exited")
        ticks = sensor_ticks(instance, name)
        if len(ticks) >= n:
            return ticks
        time.sleep(1)
    raise RuntimeError(f"{name}: {len(sensor_ticks(instance, name))} of {n} ticks within "
                       f"{timeout_s:.0f} s")


def time_pages(url: str, keys: list[str], repeats: int) -> dict[str, Any]:
    """Each page's queries one by one (first call, median of the next) and all at once."""
    grouping = ["ccat", "grouping", "bench-archived"]
    asset = ["ccat", PIPELINE, PER_SCAN_STEPS[0]]
    values = {"{key}": asset, "{partition}": keys[len(keys) // 2],
              "{keys}": [grouping] + [["ccat", PIPELINE, s] for s in (*PER_SCAN_STEPS, "grid")],
              "{near}": [asset, ["ccat", PIPELINE, PER_SCAN_STEPS[1]], grouping],
              "{location}": "ccat_assets.definitions"}
    pages: dict[str, Any] = {}
    for page, queries in ui_queries.PAGES.items():
        filled = [(op, ui_queries.variables(v, values)) for op, v in queries]
        operations = []
        for op, v in filled:
            first, size, _ = ui_queries.post(url, op, v)
            again = [ui_queries.post(url, op, v)[0] for _ in range(repeats)]
            operations.append({"operation": op, "first_s": round(first, 3),
                               "median_s": round(statistics.median(again), 3),
                               "response_kb": round(size / 1024, 1)})
        together = [ui_queries.page(url, filled) for _ in range(repeats)]
        slowest = max(operations, key=lambda o: o["median_s"])
        pages[page] = {"operations": operations,
                       "all_at_once_median_s": round(statistics.median(together), 3),
                       "slowest_operation": slowest["operation"],
                       "slowest_operation_median_s": slowest["median_s"]}
    return pages


def retired_keys(n: int) -> list[str]:
    """Keys of scans reduced and retired from the partition set: their materializations stay
    in the event log, their keys are not partitions. Deleting a dynamic partition removes only
    its key row, so keys never registered stand for keys registered and deleted."""
    return [f"executed_obs_unit=retired-{i:07d}" for i in range(n)]


def run_size(base_url: str, n_scans: int, fraction: float, repeats: int, ticks: int,
             timeout_s: float, reduced: bool, retired: int = 0, sensor_timeout_s: int = 0,
             pages: bool = True, standalone: bool = False) -> dict[str, Any]:
    import dagster as dg

    state = (standing_state(base_url, n_scans, history=0, packages_per_scan=1) if reduced
             else waiting_state(base_url, n_scans))
    with state as runs, \
            scratch_postgres_database(base_url, "bench_partitions_dagster") as dagster_url, \
            tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "dagster").mkdir()
        interval = 5  # the gap sensor's interval: shorter than production's, to see several
        (home / "dagster" / "dagster.yaml").write_text(yaml.safe_dump(
            instance_config(dagster_url), sort_keys=False))
        env = stack_env(home, os.environ["CCAT_OPS_DB_URL"], dagster_url, {
            "processing_location_id": "bench-processing",
            "sensor_interval_seconds": str(interval)})
        if sensor_timeout_s:  # Dagster's own limit on one sensor evaluation (default 60 s)
            env["DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS"] = str(sensor_timeout_s)
        keys = scan_keys(n_scans)
        with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
            from sensors.partitions import sync_partitions

            start = time.perf_counter()
            with session_scope() as session:
                added = sync_partitions(instance, session, load_catalog(session))
            sync_s = time.perf_counter() - start
            log(f"[{n_scans} scans] {sum(added.values())} partitions in {sync_s:.1f} s")
            materialized = sorted(random.Random(0).sample(keys, round(fraction * n_scans)))
            events_s = write_materializations(instance, materialized + retired_keys(retired))
            log(f"[{n_scans} scans] {len(materialized)} materializations per step and "
                f"{retired} of retired scans in {events_s:.1f} s")
            with code_server(home, env, standalone, timeout_s) as workspace:
                daemon = start_daemon(home, env, workspace)
                try:
                    with webserver(home, env, workspace) as (url, server):
                        tick_list = wait_for_ticks(instance, f"{PIPELINE}__gap_sensor", ticks,
                                                   daemon, timeout_s)
                        daemon_memory = process_tree_memory(daemon.pid)
                        log(f"[{n_scans} scans] gap sensor ticks: "
                            f"{[t['seconds'] for t in tick_list]}")
                        wait_for_location(url, server, timeout_s)
                        timed = time_pages(url, keys, repeats) if pages else {}
                        server_memory = process_tree_memory(server.pid)
                        log(f"[{n_scans} scans] pages: " + ", ".join(
                            f"{p} {v['all_at_once_median_s']} s" for p, v in timed.items()))
                finally:
                    stop_daemon(daemon)
    failed = [t for t in tick_list if t["status"] == "FAILURE"]
    return {
        "scans": n_scans, "ops_db_state": "reduced" if reduced else "waiting",
        "code_server": "standalone" if standalone else "managed",
        "retired_scans_materialized": retired,
        "completed_runs": runs, "partitions_added": added,
        "partitions_sync_s": round(sync_s, 2),
        "materialized_per_step": len(materialized), "materialize_events_s": round(events_s, 1),
        "gap_sensor_ticks": tick_list,
        "gap_sensor_first_tick_s": tick_list[0]["seconds"],
        "gap_sensor_steady_tick_s": statistics.median(t["seconds"] for t in tick_list[1:])
        if len(tick_list) > 1 else None,
        "gap_sensor_failed_ticks": len(failed),
        "daemon_processes": daemon_memory, "webserver_processes": server_memory,
        "sensor_timeout_s": sensor_timeout_s or 60, "pages": timed,
    }


def _peak(processes: list[dict[str, Any]], word: str) -> float | None:
    values = [p["peak_rss_mb"] for p in processes if word in p["process"]]
    return max(values) if values else None


def key_figures(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        n = f"{r['scans']} scans"
        rows += [figure(f"partitions sync, {n}", r["partitions_sync_s"], "s"),
                 figure(f"gap sensor first tick (daemon), {n}", r["gap_sensor_first_tick_s"],
                        "s"),
                 figure(f"gap sensor steady tick (daemon), {n}",
                        r["gap_sensor_steady_tick_s"], "s"),
                 figure(f"gap sensor ticks that failed (of {len(r['gap_sensor_ticks'])}), {n}",
                        r["gap_sensor_failed_ticks"], "ticks")]
        for page, v in r["pages"].items():
            rows.append(figure(f"{page} page, all queries at once, {n}",
                               v["all_at_once_median_s"], "s"))
            rows.append(figure(f"{page} page, slowest query ({v['slowest_operation']}), {n}",
                               v["slowest_operation_median_s"], "s"))
        rows += [figure(f"webserver peak RSS, {n}", _peak(r["webserver_processes"],
                                                          "dagster-webserver"), "MB"),
                 figure(f"daemon's code server peak RSS (evaluates the sensor), {n}",
                        _peak(r["daemon_processes"], "code-server")
                        or _peak(r["daemon_processes"], "grpc"), "MB")]
    return rows


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    at_size = next((r for r in results if r["scans"] == TARGET_SCANS), None)
    rows = []
    for page in ui_queries.PAGES:
        value = (at_size["pages"][page]["all_at_once_median_s"]
                 if at_size and at_size["pages"] else None)
        rows.append(at_most(f"UI {page} page answers (s), {TARGET_SCANS} scans", value,
                            MAX_PAGE_S))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scans", default="100000,400000",
                        help="comma-separated numbers of scans (partitions per step)")
    add_database_argument(parser)
    parser.add_argument("--materialized", type=float, default=0.05,
                        help="fraction of the scans materialized in Dagster, per step")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ticks", type=int, default=4, help="gap sensor ticks to wait for")
    parser.add_argument("--reduced", action="store_true",
                        help="every pair reduced in the ops-db (slow to generate) instead of "
                             "every pair waiting in a long cooldown")
    parser.add_argument("--retired", type=int, default=0,
                        help="also materialize this many scans per step whose keys are not "
                             "partitions (reduced and retired from the partition set)")
    parser.add_argument("--sensor-timeout", type=int, default=0,
                        help="DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS of the daemon (0: Dagster's "
                             "default, 60 s)")
    parser.add_argument("--no-pages", action="store_true", help="time the sensor only")
    parser.add_argument("--code-server", choices=["managed", "standalone"], default="managed",
                        help="managed: daemon and webserver each start their own from "
                             "workspace.yaml; standalone: one `dagster code-server start` "
                             "shared by both (deploy/workspace.grpc.yaml)")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds to wait for the ticks and for the webserver")
    args = parser.parse_args()
    logging.getLogger("dagster").setLevel(logging.WARNING)
    results = [run_size(args.database, int(n), args.materialized, args.repeats, args.ticks,
                        args.timeout, args.reduced, args.retired, args.sensor_timeout,
                        not args.no_pages, args.code_server == "standalone")
               for n in args.scans.split(",")]
    print(json.dumps({
        "benchmark": "partitions", "database": "postgresql", "dagster_storage": "postgres",
        "materialized_fraction": args.materialized, "machine": describe(),
        "results": results, "targets": targets(results), "figures": key_figures(results),
    }, indent=2))


if __name__ == "__main__":
    main()
