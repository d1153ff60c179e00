"""Benchmark: three pipelines under load, with faults if asked, checked for correctness.

Three pipelines share one grouping: ``load_fast`` (CONTINUOUS, priority 10) and ``load_slow``
(CONTINUOUS, priority 1), each a per-scan ``calibrate`` step batched (``batch_size``) feeding a
``map`` per source and line (batched too: the ten maps fit one run); and ``load_cron`` (CRON,
every minute, priority 5), a batched ``map`` per source and line over the raw data. A real
``dagster-daemon``, PostgreSQL for the ops-db and the Dagster instance (the production
``deploy/dagster.postgres.yaml``, only the run queue's limit set), the local backend, and a
program (``bench/programs/load_science.py``) that sleeps 0.05 to 0.2 s and writes one product.

``--scans`` scans (default 2,000) arrive in 10 bursts, one every ``--burst-interval`` seconds
whatever is in flight; each burst observes two of the five sources, both lines. Every 0.5 s
the benchmark samples the jobs executing per step (the programs in the process table), the
Dagster run queue, and the CPU and memory of the daemon and its code server. Once every pair
of every pipeline is up to date and no run is in progress it checks, and prints as JSON:

* every gap filled exactly once: no second COMPLETED run for any (step, sub-group,
  fingerprint), no row that is not COMPLETED, no job submitted twice (one job directory per
  row with a job);
* ``max_concurrent_runs`` never exceeded (the sampled maximum of executing jobs per step);
* priority order held in the queue: no run left the queue while a run of higher priority,
  queued before it, could have started (its pool had room);
* ``ccat-wm check`` clean;
* the final state is what a from-scratch gap evaluation calls up to date, pair by pair;

with the wall time, sub-groups reduced per minute, Dagster runs, and the daemon's and code
server's CPU seconds and peak memory.

``--chaos``: the same while SIGKILL hits a random run worker about once every
``--kill-every`` seconds (each run at most once, never a retry) and the daemon's whole process
group once, halfway through the bursts (then started again). At the end nothing may be lost,
nothing may have run twice, and ``ccat-wm check`` must be clean.

    python bench/load.py --scans 200 --burst-interval 3 --sleep-max 0.05   # about 2 minutes

Exit status 1 when a check fails. PostgreSQL: ``--postgres-url`` or ``CCAT_TEST_DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.orm import Session

from bench import daemon_runs
from bench.machine import describe
from bench.targets import at_most, figure
from ccat_assets.automation.gaps import Reason, evaluate
from ccat_assets.automation.gapstate.load import load_pipeline_state
from ccat_assets.codelocation.preloaded_workers import FORKSERVER_COMMAND
from ccat_assets.opsdb import ExecutedReductionStep, Pipeline, ReductionStep, RunStatus
from ccat_assets.opsdb.types import utcnow
from ccat_assets.specs.ingest import ingest, read_manifests
from examples.demo import BIN, ROOT, run
from tests.factories import write_observations

LOCATION, SOFTWARE = "load-processing", "load-science"
IMAGE = "ghcr.io/ccatobs/load-science:1.0.0"
PROGRAM = Path(__file__).resolve().parent / "programs" / "load_science.py"
SOURCES, LINES = ["SRC0", "SRC1", "SRC2", "SRC3", "SRC4"], ["CO43", "CII"]
BURSTS = 10
#: (pipeline, trigger, priority, {step: max_concurrent_runs})
PIPELINES = [
    ("load_fast", "CONTINUOUS", 10, {"calibrate": 2, "map": 1}),
    ("load_slow", "CONTINUOUS", 1, {"calibrate": 1, "map": 1}),
    ("load_cron", "CRON", 5, {"map": 1}),
]
PRIORITY = {name: priority for name, _, priority, _ in PIPELINES}
LIMITS = {f"{name}/{step}": limit for name, _, _, steps in PIPELINES
          for step, limit in steps.items()}
SAMPLE_S = 0.5


def log(message: str) -> None:
    print(f"[load {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the pipelines and the data ------------------------------------------------------------

def _step(pipeline: str, name: str, *, group_by: list[str], batch_size: int, limit: int,
          args: argparse.Namespace, depends_on: list[str] | None = None) -> dict[str, Any]:
    return {"name": name, "software": SOFTWARE, "group_by": group_by, "cooldown_seconds": 0,
            "max_retries": 2, "batch_size": batch_size, "max_concurrent_runs": limit,
            "depends_on": depends_on or [],
            "config": {"command": [sys.executable, str(PROGRAM), f"{pipeline}/{name}"],
                       "parameters": {"sleep_min_s": args.sleep_min,
                                      "sleep_max_s": args.sleep_max},
                       "resources": {"cpu": 1, "memory_gb": 0.5, "time_hours": 1}}}


def spec(args: argparse.Namespace) -> dict[str, Any]:
    pipelines = []
    for name, trigger, priority, limits in PIPELINES:
        steps = []
        if "calibrate" in limits:
            steps.append(_step(name, "calibrate", group_by=["executed_obs_unit"],
                               batch_size=args.batch_size, limit=limits["calibrate"], args=args))
        # Every map fits one batch.
        steps.append(_step(name, "map", group_by=["source", "line"],
                           batch_size=len(SOURCES) * len(LINES),
                           limit=limits["map"], args=args,
                           depends_on=["calibrate"] if "calibrate" in limits else []))
        pipelines.append({
            "name": name, "grouping": "load-archived", "processing_location": LOCATION,
            "trigger": {"type": trigger, **({"cron": "* * * * *"} if trigger == "CRON" else {})},
            "priority": priority, "steps": steps})
    return {
        "locations": [{"name": LOCATION, "type": "PROCESSING", "base_path": "processing"}],
        "software": [{"name": SOFTWARE, "versions": [{"version": "1.0.0", "image": IMAGE}]}],
        "groupings": [{"name": "load-archived", "instrument_module": "CHAI", "filter_rules": [
            {"table": "RawDataPackage", "column": "state", "operator": "eq",
             "value": "archived"}]}],
        "pipelines": pipelines,
    }


def bursts(folder: Path, n_scans: int) -> list[Path]:
    """One ingest manifest per burst; burst ``b`` observes sources ``2b`` and ``2b+1`` (mod 5),
    both lines, one package (one file) per scan."""
    manifests = []
    per_burst = [n_scans // BURSTS + (1 if b < n_scans % BURSTS else 0) for b in range(BURSTS)]
    number = 0
    for b, count in enumerate(per_burst):
        sources = [SOURCES[(2 * b) % 5], SOURCES[(2 * b + 1) % 5]]
        scans = []
        for i in range(count):
            number += 1
            scans.append((f"scan-{number:05d}", sources[i % 2], LINES[(i // 2) % 2]))
        night = (dt.date(2026, 11, 1) + dt.timedelta(days=b)).isoformat()
        manifests.append(write_observations(folder / "archive", scans, night=night,
                                            files_per_package=1, location="load-archive"))
    return manifests


# -- processes --------------------------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def processes() -> Iterator[tuple[int, list[str], list[str]]]:
    """(pid, stat fields after the name, argv) of every live process."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat and stat[0] not in ("Z", "X"):
                yield int(entry.name), stat, _cmdline(int(entry.name))


@dataclass
class Role:
    """CPU seconds and peak memory of the processes playing one role (daemon, code server),
    summed over every process that played it (a restart starts new ones)."""

    cpu_s_by_pid: dict[int, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0

    def sample(self, pid: int, stat: list[str]) -> None:
        ticks = os.sysconf("SC_CLK_TCK")
        self.cpu_s_by_pid[pid] = (int(stat[11]) + int(stat[12])) / ticks
        self.peak_rss_mb = max(self.peak_rss_mb, _rss_mb(pid))

    def as_dict(self) -> dict[str, float]:
        return {"cpu_s": round(sum(self.cpu_s_by_pid.values()), 1),
                "peak_rss_mb": round(self.peak_rss_mb, 1), "processes": len(self.cpu_s_by_pid)}


@dataclass
class Samples:
    executing_max: Counter[str] = field(default_factory=Counter)
    queued_max: Counter[str] = field(default_factory=Counter)
    daemon: Role = field(default_factory=Role)
    code_server: Role = field(default_factory=Role)
    count: int = 0
    errors: list[str] = field(default_factory=list)
    #: What was executing when a step was seen over its limit (the first few times).
    over_limit: list[dict[str, Any]] = field(default_factory=list)


# -- the stack ----------------------------------------------------------------------------

class Daemon:
    """``dagster-daemon run`` in a session of its own (its group: daemon, code server, run
    workers), output appended to one log across restarts."""

    def __init__(self, home: Path, env: dict[str, str]):
        self.home, self.env = home, env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.home / "daemon.log"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - fixed argv
                [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)

    def members(self) -> list[tuple[int, list[str]]]:
        assert self.process is not None
        return [(pid, argv) for pid, stat, argv in processes()
                if int(stat[2]) == self.process.pid]

    def kill(self) -> None:
        """SIGKILL to the whole group; returns once none of it lives."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        deadline = time.monotonic() + 30
        while self.members() and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.kill()




def _role(argv: list[str], parent_is_forkserver: bool) -> str | None:
    joined = " ".join(argv)
    if "dagster-daemon" in joined:
        return "daemon"
    if "api grpc" in joined:
        return "code_server"
    if FORKSERVER_COMMAND in joined:  # the code server's helper, or a run worker it forked
        return "run_worker" if parent_is_forkserver else "code_server"
    if "spawn_main" in joined:  # run workers started as Dagster starts them
        return "run_worker"  # (a candidate: the kill checks the pid the run announced)
    return None


class Sampler(threading.Thread):
    """Every 0.5 s: executing jobs per step (programs running in this benchmark's folder: two
    benchmarks may share the machine), the run queue per pipeline, daemon and code server CPU
    and memory; with chaos, the kills."""

    def __init__(self, daemon: Daemon, instance: Any, chaos: Chaos | None):
        super().__init__(daemon=True)
        self.d, self.instance, self.chaos = daemon, instance, chaos
        self.samples = Samples()
        self.stopping = threading.Event()

    def run(self) -> None:
        import dagster as dg

        while not self.stopping.wait(SAMPLE_S):
            try:
                executing: Counter[str] = Counter()
                where: dict[str, list[str]] = defaultdict(list)
                group = self.d.process.pid if self.d.process else None
                workers = []
                live = list(processes())
                forkservers = {pid for pid, _, argv in live if FORKSERVER_COMMAND in " ".join(argv)}
                for pid, stat, argv in live:
                    if len(argv) > 2 and argv[1] == str(PROGRAM):
                        try:
                            cwd = os.readlink(f"/proc/{pid}/cwd")
                        except OSError:
                            continue  # it just ended
                        if not cwd.startswith(f"{self.d.home}{os.sep}"):
                            continue  # another benchmark's program on the same machine
                        executing[argv[2]] += 1
                        where[argv[2]].append(f"{pid} {cwd}")
                    elif group is not None and int(stat[2]) == group:
                        role = _role(argv, int(stat[1]) in forkservers)
                        if role == "daemon":
                            self.samples.daemon.sample(pid, stat)
                        elif role == "code_server":
                            self.samples.code_server.sample(pid, stat)
                        elif role == "run_worker":
                            workers.append(pid)
                for step, n in executing.items():
                    self.samples.executing_max[step] = max(self.samples.executing_max[step], n)
                    if n > LIMITS.get(step, 0) and len(self.samples.over_limit) < 5:
                        self.samples.over_limit.append(
                            {"at": time.strftime("%H:%M:%S"), "step": step,
                             "processes": where[step]})
                queued = Counter(r.tags.get("ccat/pipeline", "?") for r in self.instance.get_runs(
                    filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED])))
                for pipeline, n in queued.items():
                    self.samples.queued_max[pipeline] = max(self.samples.queued_max[pipeline], n)
                self.samples.count += 1
                if self.chaos is not None:
                    self.chaos.maybe_kill_worker(workers, self.instance)
            except Exception as exc:  # a sample lost to a race with a dying process
                self.samples.errors.append(f"{type(exc).__name__}: {exc}")


@dataclass
class Chaos:
    kill_every_s: float
    rng: random.Random
    next_kill: float = 0.0
    killed_runs: list[str] = field(default_factory=list)
    daemon_kills: int = 0

    def __post_init__(self) -> None:
        self.next_kill = time.monotonic() + self.rng.uniform(0.5, 1.5) * self.kill_every_s

    def maybe_kill_worker(self, workers: list[int], instance: Any) -> None:
        """SIGKILL one run worker of a run never killed before and not itself a retry."""
        if time.monotonic() < self.next_kill or not workers:
            return
        self.rng.shuffle(workers)
        for pid in workers:
            run_id = _run_id_of(pid, instance)
            if run_id is None or run_id in self.killed_runs:
                continue
            run = instance.get_run_by_id(run_id)
            if run is None or run.parent_run_id is not None or run.is_finished:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                self.killed_runs.append(run_id)
                log(f"chaos: SIGKILL run worker {pid} of run {run_id[:8]}")
                self.next_kill = time.monotonic() + \
                    self.rng.uniform(0.5, 1.5) * self.kill_every_s
            return


def killed_run_outcomes(killed: list[str], runs: list[Any]) -> dict[str, Any]:
    """How each killed run ended, and the killed runs that neither succeeded nor were retried.

    A kill can land after the run's work is done (its success already stored, the worker
    exiting): such a run ends SUCCESS and rightly has no retry. Every other killed run must
    have been retried by Dagster.
    """
    status = {r.run_id: r.status.value for r in runs}
    retried = {r.parent_run_id for r in runs if r.parent_run_id}
    ended = Counter(status.get(run_id, "MISSING") for run_id in killed)
    return {"killed_run_status": dict(ended),
            "killed_runs_not_retried": [run_id for run_id in killed if run_id not in retried
                                        and status.get(run_id) != "SUCCESS"]}


def _run_id_of(pid: int, instance: Any) -> str | None:
    """The run a worker executes: it announced its pid in the run's first event."""
    import dagster as dg

    from ccat_assets.dagster_face.run_launcher import STARTED_PREFIX

    started = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    for each in started:
        for entry in instance.all_logs(each.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            if entry.message.startswith(f"{STARTED_PREFIX}{pid})"):
                return each.run_id
    return None


# -- settling and the checks ----------------------------------------------------------------

def not_up_to_date(engine: sa.Engine) -> list[tuple[str, str, str, str]]:
    """(pipeline, step, sub-group, reason) of every pair a from-scratch gap evaluation does
    not call up to date."""
    left = []
    with Session(engine) as session:
        for name, *_ in PIPELINES:
            state = load_pipeline_state(session, name)
            left += [(name, d.step, d.key, d.reason.value) for d in evaluate(state, utcnow())
                     if d.reason != Reason.UP_TO_DATE]
    return left


def wait_settled(engine: sa.Engine, instance: Any, daemon: Daemon, timeout_s: float) -> None:
    """Until every pair is up to date and no Dagster run is queued or in progress."""
    import dagster as dg

    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        if daemon.process is not None and daemon.process.poll() is not None:
            raise RuntimeError("dagster-daemon exited")
        left = not_up_to_date(engine)
        live = instance.get_runs_count(filters=dg.RunsFilter(statuses=[
            dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
            dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]))
        if not left and not live:
            return
        summary = (len(left), live, Counter(r for *_, r in left).most_common(3))
        if summary != last:
            log(f"waiting: {len(left)} pairs not up to date {dict(summary[2])}, {live} live runs")
            last = summary
        time.sleep(2)
    raise RuntimeError(f"not settled within {timeout_s:.0f} s: {not_up_to_date(engine)[:10]}")


def gap_checks(engine: sa.Engine, jobs_dir: Path) -> dict[str, Any]:
    """Every gap filled exactly once and no job submitted twice, from the ops-db and the local
    backend's job directories (one per job, one per member of an array)."""
    ers = ExecutedReductionStep
    with Session(engine) as session:
        rows = session.execute(
            sa.select(Pipeline.name, ReductionStep.name, ers.sub_group_key,
                      ers.input_fingerprint, ers.status, ers.hpc_job_id)
            .join(ReductionStep, ReductionStep.id == ers.reduction_step_id)
            .join(Pipeline, Pipeline.id == ReductionStep.pipeline_id)).all()
        # What a row that is not COMPLETED was: enough to find its run in the daemon's log.
        unfinished = session.execute(
            sa.select(Pipeline.name, ReductionStep.name, ers.sub_group_key, ers.status,
                      ers.dagster_run_id, ers.retry_count, ers.hpc_job_id, ers.created_at,
                      ers.finished_at, ers.error_message)
            .join(ReductionStep, ReductionStep.id == ers.reduction_step_id)
            .join(Pipeline, Pipeline.id == ReductionStep.pipeline_id)
            .where(ers.status != RunStatus.COMPLETED).order_by(ers.id).limit(20)).all()
    completed = Counter((p, s, k, f) for p, s, k, f, status, _ in rows
                        if status == RunStatus.COMPLETED)
    twice = [list(t) for t, n in completed.items() if n > 1]
    not_completed = Counter(status.value for *_, status, _ in rows
                            if status != RunStatus.COMPLETED)
    with_job = [job for *_, job in rows if job]
    job_dirs = []
    if jobs_dir.is_dir():
        for job in jobs_dir.iterdir():
            if job.name.startswith("."):
                continue
            tasks = job / "tasks"
            job_dirs += [f"{job.name}#{t.name}" for t in tasks.iterdir()] if tasks.is_dir() \
                else [job.name]
    per_triple = Counter((p, s, k, f) for p, s, k, f, _, job in rows if job)
    return {
        "rows": len(rows), "completed_runs": sum(completed.values()),
        "completed_twice": twice[:10], "rows_not_completed": dict(not_completed),
        "rows_not_completed_first": [
            {"step": f"{p}/{s}", "key": k, "status": status.value, "run": run, "retry": retry,
             "job": job, "created": str(created), "finished": str(finished),
             "error": (error or "")[:300]}
            for p, s, k, status, run, retry, job, created, finished, error in unfinished],
        "rows_with_a_job": len(with_job), "job_ids_distinct": len(set(with_job)),
        "jobs_submitted": len(job_dirs),
        "triples_with_two_jobs": [list(t) for t, n in per_triple.items() if n > 1][:10],
        "holds": not twice and not not_completed and len(with_job) == len(set(with_job))
        == len(job_dirs) and all(n == 1 for n in per_triple.values()),
    }


def concurrency_check(samples: Samples) -> dict[str, Any]:
    over = {step: n for step, n in samples.executing_max.items() if n > LIMITS.get(step, 0)}
    return {"sampled_max": dict(sorted(samples.executing_max.items())), "limits": LIMITS,
            "exceeded": over, "samples": samples.count, "over_limit": samples.over_limit,
            "holds": not over and bool(samples.executing_max)}


#: How the daemon's run queue marks the start of a dequeue iteration, where it decides which
#: runs to launch (``QueuedRunCoordinatorDaemon._get_runs_to_dequeue``).
ITERATION_LINE = "Priority sorting and checking tag concurrency limits for queued runs."


def run_monitoring_timing() -> tuple[float, float]:
    """How long a failed run may hold its pool slot after its last update, and the part of it
    before run monitoring may free it: ``(free_slots_after_run_end_seconds +
    poll_interval_seconds, free_slots_after_run_end_seconds)``, read once from
    deploy/dagster.postgres.yaml, the instance the benchmark runs. A killed worker never frees
    its slot; run monitoring does, in its first iteration (every ``poll_interval_seconds``)
    after ``free_slots_after_run_end_seconds``. Dagster 1.13 logs nothing when it does
    (``free_concurrency_slots_for_run`` returns None, so the "Freed ... slots" line in
    ``dagster/_daemon/monitoring/concurrency.py`` never prints)."""
    monitoring = yaml.safe_load(daemon_runs.POSTGRES_INSTANCE_YAML.read_text())["run_monitoring"]
    free_after = float(monitoring["free_slots_after_run_end_seconds"])
    return free_after + float(monitoring["poll_interval_seconds"]), free_after


#: A dead run's slot: held at most this long after its last update, freed no earlier than
#: the second figure (:func:`run_monitoring_timing`).
DEAD_RUN_SLOT_HOLD_S, DEAD_RUN_FREE_AFTER_S = run_monitoring_timing()
#: Every step here is batched, and a batched step's pool holds one run (docs/batching.md).
BATCHED_POOL_SLOTS = 1


def _stamp(line: str) -> float | None:
    """A daemon log line's time (second resolution), or None for a line without one."""
    try:
        return dt.datetime.strptime(line.replace("\x1b[32m", "")[:25],
                                    "%Y-%m-%d %H:%M:%S %z").timestamp()
    except ValueError:
        return None


def queue_decisions(daemon_log: Path) -> list[float]:
    """When each dequeue iteration decided (the daemon log's second-resolution stamps)."""
    lines = daemon_log.read_text(errors="replace").splitlines()
    return sorted(t for line in lines if ITERATION_LINE in line
                  and (t := _stamp(line)) is not None)


#: Run monitoring's log: the first line of an iteration that found runs to check, and every
#: line of the daemon that runs it.
MONITORING_START, MONITORING_LINE = "runs for monitoring", "dagster.daemon.MonitoringDaemon"


def monitoring_iterations(daemon_log: Path) -> list[tuple[float, float]]:
    """Each logged run-monitoring iteration as (its first line, its last line). An iteration
    checks the live runs first and frees dead runs' slots after, so a slot it frees is free
    by its last line (an iteration with no live run logs nothing)."""
    iterations: list[list[float]] = []
    for line in daemon_log.read_text(errors="replace").splitlines():
        if MONITORING_LINE not in line or (t := _stamp(line)) is None:
            continue
        if MONITORING_START in line:
            iterations.append([t, t])
        elif iterations:
            iterations[-1][1] = t
    return [(start, end) for start, end in iterations]


def dead_run_slot_freed(updated: float, iterations: list[tuple[float, float]]) -> float:
    """When monitoring freed the slot of a failed run last updated at ``updated``: Dagster
    frees it in the first iteration that finds the run *updated* (not ended) at least
    ``free_slots_after_run_end_seconds`` before (its ``updated_before`` filter; a retry's tag
    updates the failed run seconds after its end): that iteration's last line plus the log's
    one-second resolution. An iteration with no live run to check logs nothing; when the
    next logged one starts more than two polls later, one of those freed it, a poll after
    the run's last update at most."""
    due = updated + DEAD_RUN_FREE_AFTER_S
    poll = DEAD_RUN_SLOT_HOLD_S - DEAD_RUN_FREE_AFTER_S
    logged = [(start, end) for start, end in iterations if start >= due]
    if logged and logged[0][0] <= due + 2 * poll:
        return logged[0][1] + 1.0
    return updated + DEAD_RUN_SLOT_HOLD_S


@dataclass(frozen=True)
class RunSpan:
    """One run as the queue saw it: its priority and pool, when it was queued, launched and
    ended, and until when it held its pool slot."""

    priority: int
    pool: str
    queued: float
    launched: float
    ended: float
    slot_held_until: float


def priority_check(instance: Any, max_concurrent_runs: int, decisions: list[float],
                   lag_s: float, monitoring: list[tuple[float, float]]) -> dict[str, Any]:
    """:func:`find_inversions` over every run launched from the queue. Intervals come from the
    runs' RUN_ENQUEUED and RUN_STARTING events (the queue reports STARTING as it launches a
    run) and their end times; a failed run holds its slot until run monitoring frees it
    (:func:`dead_run_slot_freed`, from the ``monitoring`` iterations of the daemon log)."""
    import dagster as dg

    # The last enqueue: a daemon killed between storing a run's RUN_ENQUEUED event and its
    # status left it NOT_STARTED, out of the queue's sight, until the resumed sensor tick
    # enqueued it again (seen in the scaled chaos run: an "inversion" 8 s before the queue
    # could see the run).
    enq = times_by_run(_status_changes(instance, dg.DagsterEventType.RUN_ENQUEUED), last=True)
    # The first launch from the queue (the queue reports STARTING as it launches a run).
    deq = times_by_run(_status_changes(instance, dg.DagsterEventType.RUN_STARTING), last=False)
    spans = {}
    for record in instance.get_run_records():
        run = record.dagster_run
        if run.run_id in enq and run.run_id in deq:
            end = record.end_time or float("inf")
            spans[run.run_id] = RunSpan(
                PRIORITY.get(run.tags.get("ccat/pipeline"), 0),
                f"{run.tags.get('ccat/pipeline')}/{run.tags.get('ccat/step')}",
                enq[run.run_id], deq[run.run_id], end,
                max(end, dead_run_slot_freed(record.update_timestamp.timestamp(), monitoring))
                if run.status == dg.DagsterRunStatus.FAILURE else end)
    inversions = find_inversions(spans, decisions, max_concurrent_runs, lag_s)
    return {"runs_checked": len(spans), "decisions": len(decisions),
            "inversions": inversions[:10], "n_inversions": len(inversions),
            "holds": not inversions and bool(spans)}


def find_inversions(spans: dict[str, RunSpan], decisions: list[float],
                    max_concurrent_runs: int, lag_s: float) -> list[dict[str, Any]]:
    """Runs launched while a run of higher priority, queued before the queue decided, could
    have started: its pool had room and the instance's run limit was not the reason.

    The queue as Dagster runs it: each iteration decides once, at its start (``decisions``,
    from the daemon log; without one, ``lag_s`` before the launch), then launches its runs one
    by one, highest priority first (seconds each on a busy machine), so a launch is judged at
    its iteration's decision. A pool is busy with the runs holding its slots then and with
    those the same iteration launched before this one."""
    by_pool: dict[str, list[RunSpan]] = defaultdict(list)
    for span in spans.values():
        by_pool[span.pool].append(span)

    def decided(launch: float) -> float:
        earlier = [d for d in decisions if d <= launch]
        return earlier[-1] if earlier else launch - lag_s

    def room(pool: str, decision: float, launch: float) -> bool:
        """Whether the pool was below its limit when the queue decided (any moment of the
        decision's second), counting what its iteration launched before ``launch``."""
        busy = max(sum(1 for r in by_pool[pool] if r.launched < at < r.slot_held_until)
                   for at in (decision, decision + 0.5, decision + 1))
        launched = sum(1 for r in by_pool[pool] if decision + 1 <= r.launched < launch)
        return busy + launched < BATCHED_POOL_SLOTS

    def in_progress(at: float) -> int:
        return sum(1 for r in spans.values() if r.launched < at < r.ended)

    inversions = []
    for run_id, out in spans.items():
        decision = decided(out.launched)
        if in_progress(decision) >= max_concurrent_runs:
            continue
        for other_id, other in spans.items():
            if other.priority > out.priority and other.queued < decision - 1 \
                    and other.launched > out.launched and room(other.pool, decision,
                                                               out.launched):
                inversions.append({
                    "launched": f"{run_id[:8]} {out.pool}", "priority": out.priority,
                    "waiting": f"{other_id[:8]} {other.pool}", "its_priority": other.priority,
                    "queued_s_before": round(out.launched - other.queued, 1),
                    "decided_s_before": round(out.launched - decision, 1),
                    "launched_s_later": round(other.launched - out.launched, 1)})
    return inversions


def _status_changes(instance: Any, kind: Any) -> Iterator[Any]:
    """Every run status change of ``kind``, oldest first."""
    import dagster as dg

    cursor = None
    while True:
        result = instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(event_type=kind), limit=1000, cursor=cursor,
            ascending=True)
        yield from result.records
        if not result.has_more:
            return
        cursor = result.cursor


def times_by_run(records: Iterable[Any], *, last: bool) -> dict[str, float]:
    """Each run's first (or last) timestamp among ``records`` (oldest first)."""
    times: dict[str, float] = {}
    for record in records:
        if last:
            times[record.run_id] = record.timestamp
        else:
            times.setdefault(record.run_id, record.timestamp)
    return times


def final_state(engine: sa.Engine) -> dict[str, Any]:
    left = not_up_to_date(engine)
    return {"not_up_to_date": left[:10], "holds": not left}


def checked(check: Any, *args: Any) -> dict[str, Any]:
    """A check's result; a check that raised fails with its error, the others still run."""
    try:
        return check(*args)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "holds": False}


def ccat_check(env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run([str(BIN / "ccat-wm"), "check"], env=env, cwd=ROOT,  # noqa: S603
                            capture_output=True, text=True, timeout=600, check=False)
    return {"exit_code": result.returncode, "output": (result.stdout + result.stderr)[-2000:],
            "holds": result.returncode == 0}


def mode_name(args: argparse.Namespace) -> str:
    return "chaos" if args.chaos else "plain"


def keep_runs(instance: Any, path: Path) -> None:
    """Every Dagster run's record, one JSON line each, for reading beside the daemon's log
    (the benchmark's databases are dropped at its end)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for record in instance.get_run_records():
            run = record.dagster_run
            out.write(json.dumps({
                "run_id": run.run_id, "status": run.status.value,
                "parent_run_id": run.parent_run_id, "create": record.create_timestamp.timestamp(),
                "start": record.start_time, "end": record.end_time,
                "tags": {k: v for k, v in run.tags.items()
                         if k.startswith(("ccat/", "dagster/priority", "dagster/retry",
                                          "dagster/partition", "dagster/concurrency"))},
            }) + "\n")


# -- one run of the benchmark -----------------------------------------------------------------

def run_load(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    import dagster as dg

    spec_path = folder / "pipelines.yaml"
    spec_path.write_text(yaml.safe_dump(spec(args), sort_keys=False))
    manifests = bursts(folder, args.scans)
    instance_config = daemon_runs.instance_yaml(args.max_concurrent_runs, None)
    settings = {"processing_location_id": LOCATION, "hpc_backend": "local",
                "container_runtime": "host", "local_max_parallel": str(args.parallel),
                "sensor_interval_seconds": str(args.sensor_interval),
                "job_poll_seconds": str(args.job_poll_seconds)}
    with daemon_runs.stack(args.postgres_url, folder, settings, instance_config) as s:
        env = s.env
        run(str(BIN / "ccat-wm"), "apply", "--no-reload", str(spec_path), env=env, capture=True)
        run(str(BIN / "dagster"), "instance", "migrate", env=env, capture=True)
        daemon = Daemon(s.home, env)
        daemon.start()
        chaos = Chaos(args.kill_every, random.Random(args.seed)) if args.chaos else None
        saved = dict(os.environ)
        os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_")})
        try:
            with dg.DagsterInstance.get() as instance:
                daemon_runs.wait_for_log(daemon.log, "load_fast__gap_sensor", daemon.process,
                                         300)
                sampler = Sampler(daemon, instance, chaos)
                sampler.start()
                started = time.monotonic()
                for b, manifest in enumerate(manifests):
                    if b:
                        time.sleep(max(0.0, started + b * args.burst_interval
                                       - time.monotonic()))
                    with Session(s.opsdb) as session, session.begin():
                        ingest(session, read_manifests([manifest]))  # as `ccat-wm ingest`
                    log(f"burst {b + 1}/{BURSTS} registered")
                    if chaos is not None and b == BURSTS // 2:
                        daemon.kill()
                        chaos.daemon_kills += 1
                        log("chaos: SIGKILL of the daemon's process group; starting it again")
                        daemon.start()
                wait_settled(s.opsdb, instance, daemon, args.timeout)
                wall = time.monotonic() - started
                sampler.stopping.set()
                sampler.join(10)
                samples = sampler.samples
                runs = instance.get_runs()
                if args.logs:
                    keep_runs(instance, Path(args.logs) / f"runs-{mode_name(args)}"
                                                          f"-{args.scans}.jsonl")
                checks = {
                    "gaps_filled_once": checked(gap_checks, s.opsdb, s.home / "jobs"),
                    "max_concurrent_runs": checked(concurrency_check, samples),
                    "priority_order": checked(priority_check, instance,
                                              args.max_concurrent_runs,
                                              queue_decisions(daemon.log), args.decision_lag,
                                              monitoring_iterations(daemon.log)),
                    "final_state_is_a_from_scratch_evaluation": checked(final_state, s.opsdb),
                }
        finally:
            daemon.stop()
            os.environ.clear()
            os.environ.update(saved)
        checks["ccat_wm_check"] = checked(ccat_check, env)
        if args.logs:
            Path(args.logs).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(daemon.log,
                            Path(args.logs) / f"daemon-{mode_name(args)}-{args.scans}.log")
        log(daemon.log.read_text(errors="replace")[-3000:] if not all(
            c["holds"] for c in checks.values()) else "every check holds")
    completed = checks["gaps_filled_once"].get("completed_runs", 0)
    return {
        "wall_s": round(wall, 1), "sub_groups_per_minute": round(completed / wall * 60, 1),
        "completed_runs": completed,
        "dagster_runs": len(runs),
        "dagster_runs_by_status": dict(Counter(r.status.value for r in runs)),
        "dagster_run_retries": sum(1 for r in runs if r.parent_run_id),
        "queued_max_by_pipeline": dict(samples.queued_max),
        "daemon": samples.daemon.as_dict(), "code_server": samples.code_server.as_dict(),
        "sampling_errors": samples.errors[:5],
        "chaos": None if chaos is None else {"run_workers_killed": len(chaos.killed_runs),
                                              "daemon_killed": chaos.daemon_kills,
                                              **killed_run_outcomes(chaos.killed_runs, runs)},
        "checks": checks,
    }


def report(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    checks = result["checks"]
    mode = mode_name(args)
    return {
        "benchmark": "load", "mode": mode,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": describe(),
        "scans": args.scans, "bursts": BURSTS, "burst_interval_s": args.burst_interval,
        "pipelines": [{"name": n, "trigger": t, "priority": p, "max_concurrent_runs": steps}
                      for n, t, p, steps in PIPELINES],
        "settings": {"batch_size": args.batch_size, "parallel": args.parallel,
                     "max_concurrent_runs": args.max_concurrent_runs,
                     "sensor_interval_seconds": args.sensor_interval,
                     "job_poll_seconds": args.job_poll_seconds,
                     "program_sleep_s": [args.sleep_min, args.sleep_max]},
        "result": result,
        "all_checks_hold": all(c["holds"] for c in checks.values()),
        "targets": [at_most(f"{name} ({mode}): failures", 0 if c["holds"] else 1, 0)
                    for name, c in checks.items()],
        "figures": [
            figure(f"{mode}: wall time, {args.scans} scans in {BURSTS} bursts",
                   result["wall_s"], "s"),
            figure(f"{mode}: sub-groups reduced per minute", result["sub_groups_per_minute"]),
            figure(f"{mode}: Dagster runs", result["dagster_runs"]),
            figure(f"{mode}: daemon CPU", result["daemon"]["cpu_s"], "s"),
            figure(f"{mode}: daemon peak memory", result["daemon"]["peak_rss_mb"], "MB"),
            figure(f"{mode}: code server CPU", result["code_server"]["cpu_s"], "s"),
            figure(f"{mode}: code server peak memory", result["code_server"]["peak_rss_mb"],
                   "MB"),
        ],
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scans", type=int, default=2000)
    parser.add_argument("--chaos", action="store_true",
                        help="SIGKILL run workers about every --kill-every s, the daemon once")
    parser.add_argument("--kill-every", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--burst-interval", type=float, default=30.0,
                        help="seconds between two bursts of scans")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=4,
                        help="LOCAL_MAX_PARALLEL: programs at once on this machine")
    parser.add_argument("--max-concurrent-runs", type=int, default=4,
                        help="the instance's run queue limit")
    parser.add_argument("--sensor-interval", type=int, default=2)
    parser.add_argument("--job-poll-seconds", type=float, default=0.5)
    parser.add_argument("--sleep-min", type=float, default=0.05)
    parser.add_argument("--sleep-max", type=float, default=0.2)
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds to settle after the last burst")
    parser.add_argument("--decision-lag", type=float, default=5.0,
                        help="seconds between the queue's decision and a launch, where the "
                             "daemon log does not give the decision")
    parser.add_argument("--logs", default=None, help="keep the daemon's log in this folder")
    parser.add_argument("--postgres-url", default=os.environ.get("CCAT_TEST_DATABASE_URL"))
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    if not args.postgres_url:
        parser.error("needs --postgres-url or CCAT_TEST_DATABASE_URL")
    if args.scans < BURSTS:
        parser.error(f"--scans must be at least {BURSTS}")
    return args


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM (``timeout``, a CI runner) unwinds like an error, so the daemon's process
    group is stopped and the temporary home removed instead of left running."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-load-", dir=args.workdir) as tmp:
        result = report(args, run_load(args, Path(tmp)))
    print(json.dumps(result, indent=2, default=str), flush=True)
    return 0 if result["all_checks_hold"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
