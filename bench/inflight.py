"""Benchmark: HPC jobs in flight per GB of orchestrator memory, with real SLURM jobs held.

A Dagster run keeps its worker process for as long as its job waits in the HPC queue, so the
jobs one orchestrator can keep queued are its run concurrency times ``batch_size``, and the
memory they take is what sets the run concurrency an operator can afford. For each batch size
B this starts a fresh stack (scratch ops-db schema, scratch Dagster database, the production
``deploy/dagster.postgres.yaml`` with ``max_concurrent_runs`` R, a real ``dagster-daemon``),
the SLURM backend over SSH to the loopback cluster with ``--hold`` added to every ``sbatch``
(``CCAT_WORKFLOW_MANAGER_SLURM_EXTRA_SBATCH_ARGS``, so no job ever starts), a one-step per-scan
pipeline with ``batch_size: B`` and R x B scans. Once all R runs are started and every job is
pending in SLURM it reads the memory of each process of the orchestrator from ``/proc``:
RSS and PSS (proportional set size: shared pages split among the processes sharing them, so
PSS adds up to what the processes take together) of the daemon, its code server and every run
worker. It then cancels exactly the jobs it submitted (``scancel``) and stops.

Needs the loopback SLURM cluster and sshd (``. scripts/services/env.sh``). Prints one JSON
document, progress on stderr::

    python bench/inflight.py --runs 3 --batch-sizes 1,50
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from bench import daemon_runs
from bench.machine import describe
from bench.meter import children_by_parent
from bench.targets import figure
from ccat_assets.codelocation.preloaded_workers import FORKSERVER_COMMAND
from ccat_assets.opsdb import ExecutedReductionStep
from examples.demo import BIN, run

PROGRAM = Path(__file__).resolve().parent / "programs" / "sleep_science.py"
LOCATION, SOFTWARE = "bench-processing", "bench-held"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def spec(pipeline: str, batch_size: int) -> dict[str, Any]:
    """One per-scan step; no ``max_concurrent_runs``, so only the run queue's limit applies
    (a batched step with a pool would hold one run at a time)."""
    return {
        "locations": [{"name": LOCATION, "type": "PROCESSING", "base_path": "processing"}],
        "software": [{"name": SOFTWARE, "versions": [
            {"version": "1.0.0", "image": "ghcr.io/ccatobs/bench-held:1.0.0"}]}],
        "groupings": [{"name": "bench-archived", "instrument_module": "CHAI", "filter_rules": [
            {"table": "RawDataPackage", "column": "state", "operator": "eq",
             "value": "archived"}]}],
        "pipelines": [{"name": pipeline, "grouping": "bench-archived",
                       "processing_location": LOCATION, "trigger": {"type": "CONTINUOUS"},
                       "priority": 5, "steps": [{
                           "name": "reduce", "software": SOFTWARE,
                           "group_by": ["executed_obs_unit"], "cooldown_seconds": 0,
                           "max_retries": 0, "batch_size": batch_size,
                           "config": {"command": [sys.executable, str(PROGRAM)],
                                      "parameters": {"sleep_s": 0},
                                      "resources": {"cpu": 1, "memory_gb": 1,
                                                    "time_hours": 1}}}]}],
    }


def slurm_settings() -> dict[str, str]:
    """The loopback cluster of ``scripts/services/env.sh``, every job held."""
    env = os.environ
    missing = [k for k in ("CCAT_TEST_SLURM_SSH_KEY", "CCAT_TEST_SLURM_KNOWN_HOSTS")
               if not env.get(k)]
    if missing:
        raise SystemExit(f"needs the loopback SLURM cluster: . scripts/services/env.sh "
                         f"({', '.join(missing)} unset)")
    return {"hpc_backend": "slurm", "container_runtime": "host",
            "slurm_host": env.get("CCAT_TEST_SLURM_SSH_HOST", "127.0.0.1"),
            "slurm_port": env.get("CCAT_TEST_SLURM_SSH_PORT", "22"),
            "slurm_user": env.get("CCAT_TEST_SLURM_SSH_USER", "root"),
            "slurm_key_path": env["CCAT_TEST_SLURM_SSH_KEY"],
            "slurm_known_hosts": env["CCAT_TEST_SLURM_KNOWN_HOSTS"],
            "slurm_partition": env.get("CCAT_TEST_SLURM_PARTITION", ""),
            "slurm_extra_sbatch_args": "--hold",
            "processing_location_id": LOCATION, "sensor_interval_seconds": "5"}


def submitted_jobs(engine: sa.Engine) -> list[str]:
    """The job ids the ops-db recorded (array members as ``<array>_<index>``)."""
    with engine.connect() as connection:
        return [str(j) for j in connection.scalars(sa.select(ExecutedReductionStep.hpc_job_id)
                                                    .where(ExecutedReductionStep.hpc_job_id
                                                           .is_not(None)))]


def queue(env: dict[str, str], prefix: str) -> list[tuple[str, str, str]]:
    """``(job id, state, reason)`` of this stack's jobs in SLURM (by their name prefix)."""
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T|%r|%j"], env=env, text=True,
                         capture_output=True, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.count("|") == 3]
    return [(i, state, reason) for i, state, reason, name in rows if name.startswith(prefix)]


def cancel(env: dict[str, str], engine: sa.Engine, prefix: str) -> int:
    """scancel every job of this stack: the ids in the ops-db and any queued by its prefix."""
    ids = {j.split("_")[0] for j in submitted_jobs(engine)}
    ids |= {i.split("_")[0] for i, _, _ in queue(env, prefix)}
    if ids:
        subprocess.run(["scancel", *sorted(ids)], env=env, check=False)
    return len(ids)




def processes(root_pid: int) -> list[dict[str, Any]]:
    """Every descendant of ``root_pid`` with its role, RSS and PSS in MB."""
    children = children_by_parent()
    rows, todo = [], [(root_pid, None)]
    lines: dict[int, str] = {}
    while todo:
        pid, parent = todo.pop()
        todo += [(child, pid) for child in children.get(pid, [])]
        try:
            argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().decode().split("\0")
            rollup = dict(line.split(":", 1) for line in (Path("/proc") / str(pid) /
                          "smaps_rollup").read_text().splitlines()[1:])
        except (OSError, ValueError):
            continue
        line = lines[pid] = " ".join(argv)
        # the code server forks each run's worker from its forkserver (spawned as Dagster
        # does when CCAT_WORKFLOW_MANAGER_PRELOADED_RUN_WORKERS=false)
        forked = FORKSERVER_COMMAND in line and FORKSERVER_COMMAND in lines.get(parent or -1, "")
        role = ("run worker" if forked or "spawn_main" in line or "execute_run" in line
                else "forkserver" if FORKSERVER_COMMAND in line
                else "daemon" if "dagster-daemon" in line
                else "code server" if " api grpc" in line or "code-server" in line
                else Path(argv[0]).name if argv and argv[0] else "?")
        rows.append({"pid": pid, "parent": parent, "role": role,
                     "rss_mb": _mb(rollup.get("Rss")), "pss_mb": _mb(rollup.get("Pss"))})
    return rows


def per_run(found: list[dict[str, Any]]) -> list[float]:
    """PSS of each run worker with its own helpers (the processes copying its logs)."""
    below: dict[int, list[dict[str, Any]]] = {}
    for p in found:
        below.setdefault(p["parent"], []).append(p)

    def subtree(p: dict[str, Any]) -> float:
        return p["pss_mb"] + sum(subtree(c) for c in below.get(p["pid"], []))

    return [round(subtree(p), 1) for p in found if p["role"] == "run worker"]


def _mb(value: str | None) -> float:
    return round(int(value.split()[0]) / 1024, 1) if value else 0.0


def wait_until_held(s: daemon_runs.Stack, daemon: subprocess.Popen[bytes], prefix: str,
                    n_jobs: int, n_runs: int, timeout_s: float) -> list[dict[str, Any]]:
    """Until every job is pending in SLURM and every run has its worker; the processes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError("dagster-daemon exited")
        pending = [q for q in queue(s.env, prefix) if q[1] == "PENDING"]
        found = processes(daemon.pid)
        workers = [p for p in found if p["role"] == "run worker"]
        if len(pending) >= n_jobs and len(submitted_jobs(s.opsdb)) >= n_jobs \
                and len(workers) >= n_runs:
            time.sleep(10)  # the workers settle into polling the queue
            return processes(daemon.pid)
        time.sleep(2)
    raise RuntimeError(f"within {timeout_s:.0f} s only {len(pending)} of {n_jobs} jobs pending "
                       f"and {len(workers)} of {n_runs} run workers")


def measure(args: argparse.Namespace, batch_size: int) -> dict[str, Any]:
    pipeline = f"bench_inflight_{uuid.uuid4().hex[:8]}"
    n_jobs = args.runs * batch_size
    log(f"batch_size {batch_size}: {args.runs} runs, {n_jobs} held jobs")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec_path = folder / "pipeline.yaml"
        spec_path.write_text(yaml.safe_dump(spec(pipeline, batch_size), sort_keys=False))
        from tests.factories import write_observations

        manifest = write_observations(folder / "archive", [
            (f"scan-{i:05d}", "BENCH", "CO43") for i in range(n_jobs)], location="bench-archive")
        instance = daemon_runs.instance_yaml(args.runs, None)
        with daemon_runs.stack(args.postgres_url, folder, slurm_settings(), instance) as s:
            env = s.env | {k: v for k, v in os.environ.items() if k.startswith("SLURM_")}
            run(str(BIN / "ccat-wm"), "apply", "--no-reload", str(spec_path), env=s.env,
                capture=True)
            prefix = f"ccat-{pipeline}-"
            daemon = daemon_runs.start_daemon(s.home, s.env)
            try:
                run(str(BIN / "ccat-wm"), "ingest", str(manifest), env=s.env, capture=True)
                found = wait_until_held(s, daemon, prefix, n_jobs, args.runs, args.timeout)
                held = queue(env, prefix)
            finally:
                cancelled = cancel(env, s.opsdb, prefix)
                daemon_runs.stop_daemon(daemon)
    workers = [p for p in found if p["role"] == "run worker"]
    total_pss = sum(p["pss_mb"] for p in found)
    runs_pss = per_run(found)
    per_run_pss = sum(runs_pss) / len(runs_pss)
    return {
        "batch_size": batch_size, "runs": args.runs, "jobs_held": len(held),
        "job_states": sorted({f"{state} ({reason})" for _, state, reason in held}),
        "scancel_ids": cancelled, "processes": found,
        "run_workers": len(workers),
        "run_worker_rss_mb": round(sum(p["rss_mb"] for p in workers) / len(workers), 1),
        "run_worker_pss_mb": round(sum(p["pss_mb"] for p in workers) / len(workers), 1),
        "per_run_pss_mb": round(per_run_pss, 1),
        "fixed_pss_mb": round(total_pss - sum(runs_pss), 1),
        "orchestrator_pss_mb": round(total_pss, 1),
        "jobs_per_gb_orchestrator": round(n_jobs / (total_pss / 1024), 1),
        "jobs_per_gb_of_runs": round(batch_size / (per_run_pss / 1024), 1),
    }


def figures(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        b = f"batch_size {r['batch_size']}"
        rows += [figure(f"one waiting run (worker and its log helpers), PSS, {b}",
                        r["per_run_pss_mb"], "MB"),
                 figure(f"run worker alone, RSS, {b}", r["run_worker_rss_mb"], "MB"),
                 figure(f"daemon and code servers (fixed), PSS, {b}", r["fixed_pss_mb"], "MB"),
                 figure(f"jobs in flight per GB of waiting runs, {b}",
                        r["jobs_per_gb_of_runs"], "jobs/GB"),
                 figure(f"jobs in flight per GB of the whole orchestrator ({r['runs']} runs), "
                        f"{b}", r["jobs_per_gb_orchestrator"], "jobs/GB")]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3,
                        help="run concurrency (max_concurrent_runs): runs waiting at once")
    parser.add_argument("--batch-sizes", default="1,50")
    parser.add_argument("--postgres-url", default=os.environ.get(
        "CCAT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    results = [measure(args, int(b)) for b in args.batch_sizes.split(",")]
    print(json.dumps({
        "benchmark": "inflight", "machine": describe(), "results": results,
        "targets": [], "figures": figures(results),
    }, indent=2))


if __name__ == "__main__":
    main()
