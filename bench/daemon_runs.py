"""The overhead benchmark's orchestrated modes: a real ``dagster-daemon`` fills the gaps.

A fresh stack per mode: an ops-db in a scratch PostgreSQL schema, a Dagster instance on a
scratch PostgreSQL database configured by the production ``deploy/dagster.postgres.yaml``
(only the run queue's settings changed), a state folder, the pipeline applied and the daemon
started and ticking before the scans are registered. The clock starts when ``ccat-wm ingest``
has registered them and stops when every sub-group has a COMPLETED run in the ops-db.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from bench.cgroup_cpu import CpuGroup
from bench.meter import Meter
from bench.scratch_db import scratch_database, scratch_postgres_database
from ccat_assets.opsdb import ExecutedReductionStep, RunStatus
from examples.demo import BIN, ROOT, run, start_daemon, stop_daemon

POSTGRES_INSTANCE_YAML = ROOT / "deploy" / "dagster.postgres.yaml"


@dataclass(frozen=True)
class Stack:
    """One mode's services: where they live and how to reach them."""

    home: Path
    env: dict[str, str]
    opsdb: sa.Engine
    ops_db_version: str

    @property
    def daemon_log(self) -> Path:
        return self.home / "daemon.log"  # where examples.demo.start_daemon writes it


def instance_yaml(max_concurrent_runs: int, dequeue_workers: int | None, *,
                  pooled_storage: bool = True) -> dict[str, Any]:
    """The production instance config with the run queue's limit set for this machine and,
    if ``dequeue_workers`` is given, runs launched from the queue by that many threads (by
    default the queue launches one run after another, each waiting for its worker to load).
    ``pooled_storage=False``: Dagster's own ``storage: postgres`` with the same fields, which
    connects anew for every storage call (the baseline of the pooled storage)."""
    config = yaml.safe_load(POSTGRES_INSTANCE_YAML.read_text())
    if not pooled_storage:
        fields = dict(config["storage"]["custom"]["config"])
        fields.pop("pool", None)
        config["storage"] = {"postgres": fields}
    config["concurrency"]["runs"]["max_concurrent_runs"] = max_concurrent_runs
    if dequeue_workers:
        config["run_coordinator"]["config"] |= {"dequeue_use_threads": True,
                                                "dequeue_num_workers": dequeue_workers}
    return config


def stack_env(home: Path, ops_url: str, dagster_url: str,
              settings: dict[str, str]) -> dict[str, str]:
    """The environment of every process of the stack; inherited CCAT_/DAGSTER_ variables are
    dropped so that only the benchmark's settings apply."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCAT_", "DAGSTER_"))}
    pg = sa.make_url(dagster_url)
    return env | {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "CCAT_OPS_DB_URL": ops_url, "CCAT_WORKFLOW_MANAGER_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"), "DAGSTER_PG_USERNAME": pg.username or "postgres",
        "DAGSTER_PG_PASSWORD": pg.password or "", "DAGSTER_PG_HOST": pg.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(pg.port or 5432), "DAGSTER_PG_DB": pg.database or "",
    } | {f"CCAT_WORKFLOW_MANAGER_{k.upper()}": v for k, v in settings.items()}


@contextmanager
def stack(postgres_url: str, workdir: Path, settings: dict[str, str],
          instance: dict[str, Any]) -> Iterator[Stack]:
    """Scratch ops-db schema, scratch Dagster database and state folder, removed afterwards;
    ``instance`` is the Dagster instance's config (see :func:`instance_yaml`)."""
    with scratch_database("postgresql", postgres_url, "bench_overhead") as (engine, version), \
            scratch_postgres_database(postgres_url, "bench_overhead_dagster") as dagster_url:
        home = workdir / "home"
        (home / "dagster").mkdir(parents=True)
        (home / "dagster" / "dagster.yaml").write_text(
            yaml.safe_dump(instance, sort_keys=False))
        ops_url = engine.url.render_as_string(hide_password=False)
        yield Stack(home, stack_env(home, ops_url, dagster_url, settings), engine, version)


@contextmanager
def running_daemon(s: Stack, sensor: str, timeout_s: float,
                   keep_log: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """The daemon, started and waited for until ``sensor`` has ticked, stopped afterwards;
    on an error the end of its log goes to stderr, since the state folder is removed."""
    daemon = start_daemon(s.home, s.env)
    try:
        wait_for_log(s.daemon_log, sensor, daemon, timeout_s)
        yield daemon
    except BaseException:
        print(s.daemon_log.read_text(errors="replace")[-5000:], file=sys.stderr)
        raise
    finally:
        stop_daemon(daemon)
        if keep_log is not None:
            keep_log.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(s.daemon_log, keep_log)


#: What the daemon logs when the code location cannot load: waiting longer will not help.
LOAD_ERROR = "Error while importing code"


def wait_for_log(log: Path, text: str, daemon: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Until the daemon's log mentions ``text`` (its first sensor tick names the sensor)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError("dagster-daemon exited")
        content = log.read_text(errors="replace") if log.exists() else ""
        if text in content:
            return
        if LOAD_ERROR in content:
            cause = re.search(r"\w+Error: [^\n]*", content[content.index(LOAD_ERROR):])
            raise RuntimeError("the code location failed to load in dagster-daemon: "
                               + (cause.group(0) if cause else "see its log"))
        time.sleep(0.5)
    raise RuntimeError(f"dagster-daemon did not tick {text} within {timeout_s:.0f} s")


def run_counts(engine: sa.Engine) -> tuple[int, int, list[str]]:
    """(sub-groups with a COMPLETED run, FAILED runs, some failure messages) in the ops-db."""
    table = ExecutedReductionStep
    with engine.connect() as connection:
        done = connection.scalar(sa.select(sa.func.count(sa.distinct(table.sub_group_key)))
                                 .where(table.status == RunStatus.COMPLETED))
        failed = list(connection.scalars(sa.select(table.error_message)
                                         .where(table.status == RunStatus.FAILED).limit(3)))
        n_failed = connection.scalar(sa.select(sa.func.count())
                                     .where(table.status == RunStatus.FAILED))
    return done or 0, n_failed or 0, [str(m) for m in failed]


def wait_until_completed(s: Stack, n: int, daemon: subprocess.Popen[bytes], timeout_s: float,
                         poll_s: float = 0.5) -> None:
    """Until ``n`` sub-groups have a COMPLETED run; any FAILED run ends the benchmark."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, n_failed, messages = run_counts(s.opsdb)
        if n_failed:
            raise RuntimeError(f"{n_failed} run(s) FAILED, e.g. {messages}")
        if done >= n:
            return
        if daemon.poll() is not None:
            raise RuntimeError("dagster-daemon exited")
        time.sleep(poll_s)
    raise RuntimeError(f"only {run_counts(s.opsdb)[0]} of {n} sub-groups completed within "
                       f"{timeout_s:.0f} s")


def dagster_runs(s: Stack, pipeline: str, settle_s: float = 120) -> dict[str, Any]:
    """The Dagster runs of ``pipeline`` by status, once none is still in progress, and when
    the first one was created and started (epoch seconds)."""
    import dagster as dg  # after the measured phase: importing it costs a second and 70 MB

    saved = dict(os.environ)
    os.environ.update({k: v for k, v in s.env.items() if k.startswith("DAGSTER_")})
    try:
        with dg.DagsterInstance.get() as instance:
            deadline = time.monotonic() + settle_s
            while True:
                runs = instance.get_runs(filters=dg.RunsFilter(tags={"ccat/pipeline": pipeline}))
                statuses = Counter(r.status.value for r in runs)
                if all(r.is_finished for r in runs) or time.monotonic() > deadline:
                    break
                time.sleep(1)
            first = instance.get_run_records(
                filters=dg.RunsFilter(tags={"ccat/pipeline": pipeline}), limit=1,
                order_by="create_timestamp", ascending=True)
            tick = (requesting_tick(instance, f"{pipeline}__gap_sensor", first[0])
                    if first else None)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {"total": len(runs), "by_status": dict(sorted(statuses.items())),
            "first_tick_started": tick,
            "first_created": first[0].create_timestamp.timestamp() if first else None,
            "first_started": first[0].start_time if first else None}


def requesting_tick(instance: Any, sensor: str, record: Any) -> float | None:
    """When the tick of ``sensor`` that requested the run of ``record`` started (epoch
    seconds): the tick naming the run, else the last one started before the run was created."""
    from dagster._core.definitions.run_request import InstigatorType

    created = record.create_timestamp.timestamp()
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.name != sensor:
            continue
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id,
                                   before=created + 1, limit=20)
        naming = [t for t in ticks if record.dagster_run.run_id in t.run_ids]
        before = [t for t in ticks if t.timestamp <= created]
        chosen = naming or before
        return max(t.timestamp for t in chosen) if chosen else None
    return None


def first_job_times(s: Stack) -> dict[str, float | None]:
    """When the first job was submitted and its first program started (epoch seconds), as
    the local backend stamped them in its job folders (``array.json``/``job.json`` and
    ``started.json``): the ops-db records a submission only once the backend answered, and
    ``started_at`` when a poll first saw the job running."""
    submitted, started = [], []
    for name, key, into in (("array.json", "submitted", submitted),
                            ("job.json", "submitted", submitted),
                            ("started.json", "start", started)):
        for path in (s.home / "jobs").rglob(name):
            try:
                into.append(float(json.loads(path.read_text())[key]))
            except (OSError, ValueError, KeyError):
                continue
    return {"first_submitted": min(submitted, default=None),
            "first_program_started": min(started, default=None)}


#: The phases from the arrival of the data to its first program, in order, and what each is.
LATENCY_PHASES = (
    ("sensor_wait", "first_tick_started", "arrival registered -> start of the gap sensor's "
                                          "tick that requested the first run: Dagster's "
                                          "sensor loop, which runs every 5 s at most "
                                          "whatever the sensor's interval"),
    ("sensor_tick", "first_created", "that tick's start -> first run requested: partition "
                                     "sync, gap evaluation, cooldown (0 here), run requests"),
    ("queue_and_launch", "first_started", "run requested -> run started: run queue, launch "
                                          "through the code server, run worker start-up"),
    ("claim_stage_submit", "first_submitted", "run started -> first job submitted: the run "
                                              "worker claims, stages and submits"),
    ("job_start", "first_program_started", "submitted -> first program started: the "
                                           "backend's supervisor and slot"),
)


def latency_phases(arrival: float, times: dict[str, float | None]) -> dict[str, Any]:
    """Seconds per phase from ``arrival`` to the first program start (None if unknown)."""
    phases: dict[str, float | None] = {}
    previous: float | None = arrival
    for name, key, _ in LATENCY_PHASES:
        now = times.get(key)
        phases[name] = (round(now - previous, 2) if now is not None and previous is not None
                        else None)
        previous = now
    end = times.get("first_program_started")
    return {"total_s": round(end - arrival, 2) if end is not None else None,
            "phases_s": phases}


def ops_db_run_rows(engine: sa.Engine) -> dict[str, int]:
    """ExecutedReductionStep rows and the Dagster runs they name (one per run unless batched)."""
    table = ExecutedReductionStep
    with engine.connect() as connection:
        rows = connection.scalar(sa.select(sa.func.count()).select_from(table))
        ids = connection.scalar(sa.select(sa.func.count(sa.distinct(table.dagster_run_id))))
    return {"rows": rows or 0, "distinct_dagster_run_ids": ids or 0}


def measure(s: Stack, *, pipeline: str, spec: Path, observations: Path, n: int,
            timeout_s: float, keep_log: Path | None = None,
            group: CpuGroup | None = None) -> dict[str, Any]:
    """Apply, start the daemon, register the scans and time until all sub-groups completed;
    and how long the data waited for its first program, phase by phase."""
    run(str(BIN / "ccat-wm"), "apply", "--no-reload", str(spec), env=s.env, capture=True)
    started = time.monotonic()
    with running_daemon(s, f"{pipeline}__gap_sensor", 300, keep_log) as daemon:
        ready_s = time.monotonic() - started
        started = time.monotonic()
        run(str(BIN / "ccat-wm"), "ingest", str(observations), env=s.env, capture=True)
        ingest_s = time.monotonic() - started
        arrival = time.time()
        sessions_before = dagster_db_sessions(s)
        with Meter(group=group) as meter:
            wait_until_completed(s, n, daemon, timeout_s)
        sessions = dagster_db_sessions(s) - sessions_before
        runs = dagster_runs(s, pipeline)
    assert meter.result is not None
    latency = latency_phases(arrival, runs | first_job_times(s))
    return meter.result.as_dict() | {"first_batch_latency": latency} | {
        "dagster_runs": runs["total"], "dagster_runs_by_status": runs["by_status"],
        "ops_db_runs": ops_db_run_rows(s.opsdb), "ops_db": f"PostgreSQL {s.ops_db_version}",
        "daemon_ready_s": round(ready_s, 1), "ingest_s": round(ingest_s, 2),
        "dagster_db_sessions": sessions,
    }


def dagster_db_sessions(s: Stack) -> int:
    """Connections opened to the stack's Dagster database so far (``pg_stat_database``,
    PostgreSQL 14 and later; its statistics lag by up to a second)."""
    with s.opsdb.connect() as conn:
        return int(conn.scalar(sa.text(
            "SELECT sessions FROM pg_stat_database WHERE datname = :db"),
            {"db": s.env["DAGSTER_PG_DB"]}) or 0)
