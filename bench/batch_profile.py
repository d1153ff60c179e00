"""Benchmark: where a batch run's CPU goes, member by member, under cProfile.

The overhead benchmark (``bench/overhead.py``) says how much orchestration costs; this one
says where. It sets up the same one-step pipeline on PostgreSQL (ops-db in a scratch schema,
Dagster instance on a scratch database, configured as deployed), then executes the step's
batch job in this process, through the same op the run worker executes, for ``--n``
sub-groups in batches of ``--batch-size``, under :mod:`cProfile`. It reports the run
worker's CPU (this process), the machine-wide CPU (which adds the job supervisors, the
programs and PostgreSQL), CPU per member, and the profile's top entries by cumulative time
with their call counts. One JSON document on stdout, progress on stderr::

    python -m bench.batch_profile --n 200 --batch-size 50
    python -m bench.batch_profile --n 200 --profile-out batch.pstats   # for snakeviz/pstats
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench import daemon_runs
from bench.machine import describe
from bench.meter import CPU_NOTE, Meter
from bench.overhead import PIPELINE, STEP, observations, settings, spec
from bench.targets import at_most, figure
from examples.demo import BIN, run

#: The issue's target for what orchestration may cost per member, in CPU seconds.
MAX_CPU_PER_MEMBER_S = 0.05


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def top_entries(profile: cProfile.Profile, limit: int) -> list[dict[str, Any]]:
    """The profile's ``limit`` top functions by cumulative time, with their call counts."""
    stats = pstats.Stats(profile, stream=io.StringIO())
    rows = []
    for (path, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{_short(path)}:{line}({name})", "calls": calls,
                     "own_s": round(own, 3), "cumulative_s": round(cumulative, 3)})
    rows.sort(key=lambda r: r["cumulative_s"], reverse=True)
    return rows[:limit]


def _short(path: str) -> str:
    """A path from the package or project root, so the report reads the same anywhere."""
    for marker in ("site-packages/", "ccat_assets/", "resources/", "sensors/", "bench/"):
        if marker in path:
            index = path.index(marker)
            return path[index + (len("site-packages/") if marker == "site-packages/" else 0):]
    return path


def execute_batches(n: int, batch_size: int, profile: cProfile.Profile | None
                    ) -> dict[str, Any]:
    """The batch job of the step, in this process, for every sub-group (settings from the
    environment); returns the timings of the execution alone."""
    import dagster as dg

    from ccat_assets.dagster_face.batch_job import batch_job_name, batch_op_name
    from ccat_assets.definitions import load_definitions
    from ccat_assets.grouping import subgroup_key
    from ccat_assets.opsdb.session import dispose_engines
    from ccat_assets.settings import get_settings

    get_settings.cache_clear()
    dispose_engines()
    load_cpu = time.process_time()
    defs = load_definitions()  # what each run worker does first, before its op runs
    load_cpu = time.process_time() - load_cpu
    job = defs.resolve_job_def(batch_job_name(PIPELINE, STEP))
    keys = [subgroup_key(["executed_obs_unit"], [f"scan-{i:05d}"]) for i in range(1, n + 1)]
    with dg.DagsterInstance.get() as instance:
        partitions = f"{PIPELINE}__executed_obs_unit"
        instance.add_dynamic_partitions(partitions, keys)
        runs, failed = 0, 0
        cpu0, started = time.process_time(), time.perf_counter()
        with Meter() as meter:
            for first in range(0, n, batch_size):
                config = {"ops": {batch_op_name(PIPELINE, STEP): {
                    "config": {"sub_groups": keys[first:first + batch_size]}}}}
                if profile is not None:
                    profile.enable()
                try:
                    result = job.execute_in_process(instance=instance, run_config=config,
                                                    raise_on_error=False)
                finally:
                    if profile is not None:
                        profile.disable()
                runs += 1
                failed += not result.success
        process_cpu = time.process_time() - cpu0
        wall = time.perf_counter() - started
    assert meter.result is not None
    return {"definitions_load_cpu_s": round(load_cpu, 3),
            "dagster_runs": runs, "failed_runs": failed, "wall_s": round(wall, 2),
            "run_worker_cpu_s": round(process_cpu, 2), "machine": meter.result.as_dict()}


def measure(args: argparse.Namespace, folder: Path) -> tuple[dict[str, Any], cProfile.Profile]:
    """Set the stack up, then time (and profile) the batches."""
    spec_path = folder / "pipeline.yaml"
    spec_path.write_text(yaml.safe_dump(spec(args.batch_size, args.sleep), sort_keys=False))
    manifest = observations(folder, args.n)
    instance = daemon_runs.instance_yaml(3, None)
    profile = cProfile.Profile(time.process_time)  # CPU, not wall: the machine is shared
    with daemon_runs.stack(args.postgres_url, folder, settings(args), instance) as s:
        run(str(BIN / "ccat-wm"), "apply", "--no-reload", str(spec_path), env=s.env,
            capture=True)
        run(str(BIN / "ccat-wm"), "ingest", str(manifest), env=s.env, capture=True)
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(s.env)
        try:
            result = execute_batches(args.n, args.batch_size,
                                     None if args.no_profile else profile)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        done, n_failed, messages = daemon_runs.run_counts(s.opsdb)
    return result | {"completed_sub_groups": done, "failed_ops_db_runs": n_failed,
                     "failure_examples": messages}, profile


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="per-scan sub-groups")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=2, help="LOCAL_MAX_PARALLEL")
    parser.add_argument("--sleep", type=float, default=0.2, help="seconds the program sleeps")
    parser.add_argument("--sensor-interval", type=int, default=1)
    parser.add_argument("--job-poll-seconds", type=float, default=None)
    parser.add_argument("--top", type=int, default=40, help="profile entries reported")
    parser.add_argument("--no-profile", action="store_true",
                        help="time without cProfile (its own cost inflates CPU)")
    parser.add_argument("--profile-out", default=None, help="also write the pstats file here")
    parser.add_argument("--postgres-url", default=os.environ.get("CCAT_TEST_DATABASE_URL"))
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    if not args.postgres_url:
        parser.error("needs --postgres-url or CCAT_TEST_DATABASE_URL")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    log(f"batch profile: {args.n} sub-groups in batches of {args.batch_size}")
    with tempfile.TemporaryDirectory(prefix="bench-batch-profile-", dir=args.workdir) as tmp:
        result, profile = measure(args, Path(tmp))
    if args.profile_out and not args.no_profile:
        profile.dump_stats(args.profile_out)
    per_member = round(result["run_worker_cpu_s"] / args.n, 4)
    print(json.dumps({
        "benchmark": "batch_profile",
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": describe(),
        "n_sub_groups": args.n, "batch_size": args.batch_size, "parallel": args.parallel,
        "profiled": not args.no_profile,
        "measures": {
            "run_worker_cpu_s": "CPU of this process while the batch runs executed (the op, "
                                "Dagster's event writes, the ops-db client side)",
            "machine.cpu_s": CPU_NOTE,
        },
        "result": result,
        "targets": [at_most("run worker CPU per member (s)", per_member,
                            MAX_CPU_PER_MEMBER_S)],
        "figures": [figure("run worker CPU per member", per_member, "s"),
                    figure("machine CPU per member",
                           round(result["machine"]["cpu_s"] / args.n, 4), "s"),
                    figure("wall per member", round(result["wall_s"] / args.n, 4), "s")],
        "profile_top_cumulative": [] if args.no_profile else top_entries(profile, args.top),
    }, indent=2))
    return 0 if result["completed_sub_groups"] == args.n else 1


if __name__ == "__main__":
    raise SystemExit(main())
