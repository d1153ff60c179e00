"""Benchmark: what orchestration costs beside the program, per sub-group and batched.

A one-step CONTINUOUS pipeline over N per-scan sub-groups (default 200) whose program sleeps
0.2 s and writes a SCIENCE product (``bench/programs/sleep_science.py``), run three ways with
the same parallelism P (default 2):

- ``a`` bare: the same argv and environment per sub-group in a plain loop, P at a time;
- ``b`` a real ``dagster-daemon``, PostgreSQL instance and ops-db, the gap sensor launching one
  Dagster run per sub-group (``batch_size: 1``);
- ``c`` the same with ``batch_size: 50`` (``--batch-size``): up to that many gaps per run;
- ``d`` mode c on Dagster's own PostgreSQL storage, which connects anew for every storage
  call, instead of the deployed pooled one (``ccat_assets/dagster_face/pooled_storage.py``):
  the baseline of that change, side by side in the same run (``--modes a,c,d``).

Each mode reports wall time, machine-wide CPU time and peak memory (see ``bench/meter.py``:
machine-wide on purpose, so run it on a quiet machine), the Dagster runs it took and the
ratios against ``a``; and the targets of the scale issue. Prints one JSON document, progress
on stderr::

    python bench/overhead.py --n 20 --modes a,b,c      # a smoke run of about two minutes

PostgreSQL is read from ``--postgres-url`` or ``CCAT_TEST_DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from bench import bare_runs, daemon_runs
from bench.cgroup_cpu import CpuGroup
from bench.machine import describe
from bench.meter import CPU_NOTE, MEMORY_NOTE, OWN_CPU_NOTE, Meter
from bench.targets import at_least, at_most, figure
from ccat_assets.grouping import subgroup_key
from ccat_assets.settings import Settings
from tests.factories import write_observations

PIPELINE, STEP = "bench_overhead", "reduce"
LOCATION, SOFTWARE, IMAGE = "bench-processing", "bench-sleep", "ghcr.io/ccatobs/bench-sleep:1.0.0"
PROGRAM = Path(__file__).resolve().parent / "programs" / "sleep_science.py"
#: The scale issues' targets: batched runs within 1.3x of the bare program (first 1.5x,
#: tightened by the overhead issue), 5x faster than one run per sub-group, and at most
#: 0.05 CPU seconds of orchestration per sub-group ((c - a) / n).
MAX_BATCHED_OVER_BARE = 1.3
MIN_BATCHING_SPEEDUP = 5.0
MAX_ORCHESTRATION_CPU_PER_SUB_GROUP = 0.05


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def step_spec(batch_size: int, sleep_s: float) -> dict[str, Any]:
    return {"name": STEP, "software": SOFTWARE, "group_by": ["executed_obs_unit"],
            "cooldown_seconds": 0, "max_retries": 0, "batch_size": batch_size,
            "config": {"command": [sys.executable, str(PROGRAM)],
                       "parameters": {"sleep_s": sleep_s},
                       "resources": {"cpu": 1, "memory_gb": 1, "time_hours": 1}}}


def spec(batch_size: int, sleep_s: float) -> dict[str, Any]:
    """The pipeline: one final per-scan step over every archived package."""
    return {
        "locations": [{"name": LOCATION, "type": "PROCESSING", "base_path": "processing"}],
        "software": [{"name": SOFTWARE, "versions": [{"version": "1.0.0", "image": IMAGE}]}],
        "groupings": [{"name": "bench-archived", "instrument_module": "CHAI", "filter_rules": [
            {"table": "RawDataPackage", "column": "state", "operator": "eq",
             "value": "archived"}]}],
        "pipelines": [{"name": PIPELINE, "grouping": "bench-archived",
                       "processing_location": LOCATION, "trigger": {"type": "CONTINUOUS"},
                       "priority": 5, "steps": [step_spec(batch_size, sleep_s)]}],
    }


def scans(n: int) -> list[tuple[str, str, str]]:
    """``(scan, source, line)``: one source and line, so every scan is its own sub-group."""
    return [(f"scan-{i:05d}", "BENCH", "CO43") for i in range(1, n + 1)]


def observations(folder: Path, n: int) -> Path:
    """Raw files (two per scan) and the ingest manifest registering them."""
    return write_observations(folder / "archive", scans(n), location="bench-archive")


def bare(args: argparse.Namespace, folder: Path, group: CpuGroup) -> dict[str, Any]:
    """Mode a: the programs alone, given exactly what mode b would give them."""
    step = step_spec(1, args.sleep) | {"pipeline": PIPELINE, "image": IMAGE}
    keys = {scan: subgroup_key(["executed_obs_unit"], [scan]) for scan, _, _ in scans(args.n)}
    runs = bare_runs.prepare(folder / "runs", observations(folder, args.n), step, keys)
    with Meter(group=group) as meter:
        bare_runs.run_all(runs, args.parallel)
    assert meter.result is not None
    return meter.result.as_dict() | {"dagster_runs": 0}


def settings(args: argparse.Namespace) -> dict[str, str]:
    """``CCAT_WORKFLOW_MANAGER_*`` settings of the orchestrated modes (prefix omitted)."""
    chosen = {"processing_location_id": LOCATION, "hpc_backend": "local",
              "container_runtime": "host", "local_max_parallel": str(args.parallel),
              "sensor_interval_seconds": str(args.sensor_interval)}
    if args.job_poll_seconds is not None:
        chosen["job_poll_seconds"] = str(args.job_poll_seconds)
    if getattr(args, "spawned_run_workers", False):  # bench/batch_profile has no code server
        chosen["preloaded_run_workers"] = "false"
    return chosen


def orchestrated(args: argparse.Namespace, folder: Path, mode: str,
                 group: CpuGroup) -> dict[str, Any]:
    """Mode b, c or d on a fresh stack; ``batch_size`` or the storage differs between them."""
    batch_size = 1 if mode == "b" else args.batch_size
    spec_path = folder / "pipeline.yaml"
    spec_path.write_text(yaml.safe_dump(spec(batch_size, args.sleep), sort_keys=False))
    manifest = observations(folder, args.n)
    instance = daemon_runs.instance_yaml(args.max_concurrent_runs, args.dequeue_workers,
                                         pooled_storage=mode != "d")
    with daemon_runs.stack(args.postgres_url, folder, settings(args), instance) as s:
        keep = Path(args.logs) / f"daemon-{mode}.log" if args.logs else None
        result = daemon_runs.measure(s, pipeline=PIPELINE, spec=spec_path, observations=manifest,
                                     n=args.n, timeout_s=args.timeout, keep_log=keep,
                                     group=group)
    return result | {"batch_size": batch_size}


def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    log(f"mode {mode}: {args.n} sub-groups, parallel {args.parallel}")
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"bench-overhead-{mode}-", dir=args.workdir) as tmp, \
            CpuGroup() as group:
        result = (bare(args, Path(tmp), group) if mode == "a"
                  else orchestrated(args, Path(tmp), mode, group))
    log(f"mode {mode}: {result['wall_s']} s wall, {result['cpu_s']} s CPU machine-wide, "
        f"{result['own_cpu_s']} s CPU of its own processes")
    return result | {"seconds_per_sub_group": round(result["wall_s"] / args.n, 3),
                     "sub_groups_per_s": round(args.n / result["wall_s"], 2)}


def ratio(modes: dict[str, dict[str, Any]], top: str, bottom: str, key: str) -> float | None:
    if top not in modes or bottom not in modes or not modes[bottom][key]:
        return None
    return round(modes[top][key] / modes[bottom][key], 2)


def ratios(modes: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    pairs = [("b", "a"), ("c", "a"), ("b", "c"), ("d", "a"), ("c", "d")]
    return {key: {f"{t}/{b}": ratio(modes, t, b, key) for t, b in pairs}
            for key in ("wall_s", "cpu_s")}


def orchestration_cpu(modes: dict[str, dict[str, Any]], mode: str, key: str,
                      n: int) -> float | None:
    """CPU seconds per sub-group that ``mode`` spent beyond the bare loop: ``(mode - a) / n``
    of ``key`` (``cpu_s`` machine-wide, ``own_cpu_s`` the benchmark's own processes)."""
    if mode not in modes or "a" not in modes:
        return None
    top, bottom = modes[mode].get(key), modes["a"].get(key)
    if top is None or bottom is None:
        return None
    return round((top - bottom) / n, 4)


def cpu_basis(modes: dict[str, dict[str, Any]]) -> str:
    """The CPU the per-sub-group target is judged on: the benchmark's own processes where
    measured (other work on a shared machine does not count then), else machine-wide."""
    own = [m.get("own_cpu_s") for m in modes.values()]
    return "own_cpu_s" if own and all(v is not None for v in own) else "cpu_s"


def targets(modes: dict[str, dict[str, Any]], batch_size: int, n: int
            ) -> list[dict[str, Any]]:
    wall = ratios(modes)["wall_s"]
    basis = cpu_basis(modes)
    return [
        at_most(f"wall time c/a (batch_size {batch_size})", wall["c/a"], MAX_BATCHED_OVER_BARE),
        at_least(f"wall time b/c: batch_size {batch_size} at least "
                 f"{MIN_BATCHING_SPEEDUP:g}x faster than one run per sub-group", wall["b/c"],
                 MIN_BATCHING_SPEEDUP),
        at_most(f"orchestration CPU per sub-group, (c - a) / n, {basis} (s)",
                orchestration_cpu(modes, "c", basis, n), MAX_ORCHESTRATION_CPU_PER_SUB_GROUP),
    ]


def figures(modes: dict[str, dict[str, Any]], n: int) -> list[dict[str, Any]]:
    names = {"a": "bare program loop", "b": "one Dagster run per sub-group",
             "c": "batched Dagster runs",
             "d": "batched Dagster runs, Dagster's unpooled storage"}
    rows = []
    for mode, result in modes.items():
        rows.append(figure(f"{mode}: {names[mode]}, wall ({n} sub-groups)", result["wall_s"], "s"))
        rows.append(figure(f"{mode}: CPU, machine-wide", result["cpu_s"], "s"))
        rows.append(figure(f"{mode}: CPU of its own processes", result.get("own_cpu_s"), "s"))
        rows.append(figure(f"{mode}: sub-groups per second", result["sub_groups_per_s"], "/s"))
        rows.append(figure(f"{mode}: peak memory above baseline", result["peak_memory_mb"], "MB"))
        if mode != "a":
            rows.append(figure(f"{mode}: Dagster runs", result["dagster_runs"]))
            rows.append(figure(f"{mode}: connections opened to the Dagster database",
                               result.get("dagster_db_sessions")))
            for key, what in (("cpu_s", "machine-wide"), ("own_cpu_s", "own processes")):
                rows.append(figure(f"{mode}: orchestration CPU per sub-group, {what}",
                                   orchestration_cpu(modes, mode, key, n), "s"))
            latency = result.get("first_batch_latency") or {}
            rows.append(figure(f"{mode}: arrival to first program start",
                               latency.get("total_s"), "s"))
            for phase, seconds in (latency.get("phases_s") or {}).items():
                rows.append(figure(f"{mode}: first-batch latency, {phase}", seconds, "s"))
    for key, value in ratios(modes)["wall_s"].items():
        if value is not None:
            rows.append(figure(f"wall time {key}", value, "x"))
    return rows


def warnings(modes: dict[str, dict[str, Any]]) -> list[str]:
    """Modes that started on a busy machine: their machine-wide figures include other work."""
    cpus = os.cpu_count() or 1
    return [f"mode {mode} started at a 1-minute load average of {load:g} on {cpus} CPUs: "
            "other work shared the machine, so its figures overstate the cost"
            for mode, result in modes.items()
            if (load := result["load_average_start_end"][0]) > cpus / 2]


def report(args: argparse.Namespace, modes: dict[str, dict[str, Any]],
           failed: dict[str, str]) -> dict[str, Any]:
    defaults = Settings.model_fields
    return {
        "benchmark": "overhead",
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": describe(),
        "n_sub_groups": args.n, "parallel": args.parallel,
        "program": {"path": "bench/programs/sleep_science.py", "sleep_s": args.sleep,
                    "outputs": "2 SCIENCE files per sub-group (one per raw file)"},
        "settings": {
            "sensor_interval_seconds": args.sensor_interval,
            "local_max_parallel": args.parallel,
            "job_poll_seconds": args.job_poll_seconds or defaults["job_poll_seconds"].default,
            "sensor_max_runs_per_tick": defaults["sensor_max_runs_per_tick"].default,
            "run_workers": ("spawned (a new interpreter each)" if args.spawned_run_workers
                            else "preloaded (forked from the code server's forkserver)"),
            "run_coordinator": daemon_runs.instance_yaml(
                args.max_concurrent_runs, args.dequeue_workers)["run_coordinator"],
            "max_concurrent_runs": args.max_concurrent_runs,
            "step_max_concurrent_runs": "unset: no pool; LOCAL_MAX_PARALLEL bounds the programs",
            "dagster_instance": "PostgreSQL, deploy/dagster.postgres.yaml with "
                                "max_concurrent_runs set; scratch database",
            "ops_db": "PostgreSQL, scratch schema",
        },
        "measures": {
            "wall_s": "a: the program runs only (run directories, staged inputs and manifests "
                      "prepared beforehand); b, c: from the end of `ccat-wm ingest` (scans "
                      "registered, daemon already ticking) until every sub-group has a "
                      "COMPLETED run in the ops-db",
            "cpu_s": CPU_NOTE,
            "own_cpu_s": OWN_CPU_NOTE,
            "orchestration CPU per sub-group": "(mode's CPU - a's CPU) / n",
            "first_batch_latency": "b, c: from the end of `ccat-wm ingest` to the first "
                                   "program's start, by phase: "
                                   + "; ".join(f"{name}: {what}" for name, _, what
                                               in daemon_runs.LATENCY_PHASES),
            "peak_memory_mb": MEMORY_NOTE.format(interval=0.25),
            "load_average_start_end": "1-minute load average at the start and end of the "
                                      "phase: how quiet the machine was",
        },
        "failed_modes": failed,
        "warnings": [f"mode {m} failed: {e}" for m, e in failed.items()] + warnings(modes),
        "modes": modes, "ratios": ratios(modes),
        "targets": targets(modes, args.batch_size, args.n),
        "figures": figures(modes, args.n),
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="per-scan sub-groups")
    parser.add_argument("--parallel", type=int, default=os.cpu_count() or 2,
                        help="programs at once: bare workers and LOCAL_MAX_PARALLEL")
    parser.add_argument("--batch-size", type=int, default=50, help="of mode c")
    parser.add_argument("--modes", default="a,b,c",
                        type=lambda s: [m for m in s.split(",") if m])
    parser.add_argument("--sleep", type=float, default=0.2, help="seconds the program sleeps")
    parser.add_argument("--sensor-interval", type=int, default=1,
                        help="SENSOR_INTERVAL_SECONDS of the gap sensor")
    parser.add_argument("--max-concurrent-runs", type=int, default=None,
                        help="the run queue's limit (default: parallel + 1)")
    parser.add_argument("--dequeue-workers", type=int, default=None,
                        help="threads launching queued runs (default: as deployed, one)")
    parser.add_argument("--job-poll-seconds", type=float, default=None,
                        help="JOB_POLL_SECONDS (default: the product default)")
    parser.add_argument("--spawned-run-workers", action="store_true",
                        help="each run worker a new interpreter, as Dagster starts them, "
                             "instead of forked preloaded (the baseline of that change)")
    parser.add_argument("--timeout", type=float, default=3600, help="per mode, seconds")
    parser.add_argument("--postgres-url", default=os.environ.get("CCAT_TEST_DATABASE_URL"))
    parser.add_argument("--workdir", default=None, help="where run directories go")
    parser.add_argument("--logs", default=None, help="keep each mode's daemon log here")
    args = parser.parse_args(argv)
    unknown = set(args.modes) - {"a", "b", "c", "d"}
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from a, b, c, d")
    if {"b", "c", "d"} & set(args.modes) and not args.postgres_url:
        parser.error("modes b, c and d need --postgres-url or CCAT_TEST_DATABASE_URL")
    if args.max_concurrent_runs is None:
        args.max_concurrent_runs = args.parallel + 1
    return args


def main(argv: list[str] | None = None) -> int:
    """Every mode, even after one failed (its error goes into the JSON); exit 1 if any did."""
    args = parse(argv)
    modes, failed = {}, {}
    for mode in args.modes:
        try:
            modes[mode] = run_mode(mode, args)
        except Exception as exc:  # reported, so that the other modes' figures are kept
            log(f"mode {mode} failed: {exc}")
            failed[mode] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(report(args, modes, failed), indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
