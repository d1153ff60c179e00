"""Benchmark: the poll loop over 1,000 local-backend jobs, with and without log tailing.

Submits ``--jobs`` (default 1,000) real jobs on the local backend as one array (one
supervisor; each member a ``sleep`` process, so that all of them are RUNNING), waits until
they run, then inside one Dagster op (an in-process run on a temporary instance, so every
log line is a real event in a real event log) times polls one after the other, the modes
side by side in the same rounds:

- ``status``: one batched ``status`` call and the state bookkeeping (:class:`JobWatch`
  without outputs): the loop as it was before the programs' output was tailed;
- ``tail_quiet``: the same with every job's stdout/stderr tailed, nothing new written
  (the common poll: one ``stat`` per file);
- ``tail_busy``: the same after each job's program wrote ``--lines`` lines and
  ``--floods`` of them 1 MB, between polls (written untimed by the benchmark itself, as the
  programs would), so the per-poll bounds do their work and the log gets its messages.

Each poll is timed whole and in its second half alone (the watch: state bookkeeping, tailing
and writing the log's events), since the status call of 1,000 local jobs varies more from
poll to poll than tailing costs.

Prints one JSON document to stdout (progress on stderr)::

    PYTHONPATH=. .venv/bin/python bench/poll_logs.py --jobs 1000 --rounds 7

(No ``from __future__ import annotations`` here: Dagster reads the op's context annotation.)
"""

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg

from bench.machine import describe
from bench.targets import at_most, figure
from ccat_assets.execution.job_watch import JobOutput, JobWatch
from ccat_assets.execution.jobs import JobSpec
from ccat_assets.execution.output_tail import TailBounds
from resources.backends.local import LocalBackend

MODES = ("status", "tail_quiet", "tail_busy")
#: What tailing may add to a poll when nothing new was written (one ``stat`` per output
#: file), as a share of the poll without it: the loop must not notice. A share, not
#: milliseconds, because both scale alike with the machine and its load.
MAX_QUIET_ADDED_SHARE = 0.10


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def raise_file_limit(n: int) -> None:
    """The array's supervisor holds a slot lock and two output files per running member."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * n + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        limit = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def submit(root: Path, n: int) -> tuple[LocalBackend, list[str], dict[str, JobOutput]]:
    raise_file_limit(n)
    backend = LocalBackend(root / "jobs", max_parallel=n)
    specs, outputs = [], []
    for i in range(n):
        logs = root / "runs" / f"run-{i}" / "logs"
        logs.mkdir(parents=True)
        out = JobOutput(logs / "stdout.log", logs / "stderr.log")
        outputs.append(out)
        specs.append(JobSpec(name=f"bench-{i}", argv=["sleep", "600"], env={},
                             workdir=logs.parent, stdout_path=out.stdout,
                             stderr_path=out.stderr))
    ids = backend.submit_array("bench-poll-logs", specs)
    return backend, ids, dict(zip(ids, outputs, strict=True))


def wait_running(backend: LocalBackend, ids: list[str], timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        running = sum(s.state == "running" for s in backend.status(ids).values())
        if running == len(ids) or time.monotonic() > deadline:
            return running
        time.sleep(1)


def write_output(outputs: dict[str, JobOutput], lines: int, floods: int, round_no: int) -> None:
    """What the programs print between two polls (untimed)."""
    text = "".join(f"round {round_no} line {k}: some reduction progress\n"
                   for k in range(lines))
    flood = "x" * 99 + "\n"
    for i, out in enumerate(outputs.values()):
        with open(out.stdout, "a") as handle:
            handle.write(text)
        if i < floods:
            with open(out.stderr, "a") as handle:
                handle.write(flood * 10_000)  # 1 MB


def measure(backend: LocalBackend, ids: list[str], outputs: dict[str, JobOutput],
            rounds: int, lines: int, floods: int, sink: Callable[[str], None]
            ) -> dict[str, Any]:
    labels = {job_id: f"run {i}" for i, job_id in enumerate(ids)}
    watches = {"status": JobWatch(sink, labels),
               "tail_quiet": JobWatch(sink, labels, outputs, TailBounds()),
               "tail_busy": JobWatch(sink, labels, outputs, TailBounds())}
    counted: list[str] = []
    times: dict[str, list[float]] = {m: [] for m in MODES}
    watching: dict[str, list[float]] = {m: [] for m in MODES}
    messages: dict[str, list[int]] = {m: [] for m in MODES}
    for mode in MODES:  # first look: states and any old output (untimed)
        watches[mode].observe(backend.status(ids))
    for round_no in range(rounds):
        for mode in MODES:
            if mode == "tail_busy":
                write_output(outputs, lines, floods, round_no)
            watch = watches[mode]
            before = len(counted)
            watch.log = lambda m: (counted.append(m), sink(m))
            start = time.perf_counter()
            statuses = backend.status(ids)
            polled = time.perf_counter()
            watch.observe(statuses)
            end = time.perf_counter()
            times[mode].append(end - start)
            watching[mode].append(end - polled)
            messages[mode].append(len(counted) - before)
            if mode == "tail_busy":  # the quiet watch must find nothing new next round
                drain(watches["tail_quiet"], backend.status(ids), sink)
        log(f"round {round_no + 1}/{rounds}: " + ", ".join(
            f"{m} {times[m][-1] * 1000:.0f} ms (watch {watching[m][-1] * 1000:.1f} ms)"
            for m in MODES))
    return {mode: {"median_ms": _ms(statistics.median(times[mode])),
                   "max_ms": _ms(max(times[mode])),
                   "watch_median_ms": _ms(statistics.median(watching[mode])),
                   "watch_max_ms": _ms(max(watching[mode])),
                   "messages_per_poll": statistics.median(messages[mode])}
            for mode in MODES}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def drain(watch: JobWatch, statuses: dict[str, Any], sink: Callable[[str], None]) -> None:
    """Let ``watch`` read everything written so far (its per-poll budget spreads a busy
    round over several polls), untimed."""
    emitted: list[str] = []
    watch.log = lambda m: (emitted.append(m), sink(m))
    while True:
        before = len(emitted)
        watch.observe(statuses)
        if len(emitted) == before:
            return


def run(n: int, rounds: int, lines: int, floods: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-poll-logs-") as tmp:
        root = Path(tmp)
        log(f"submitting {n} local jobs as one array")
        backend, ids, outputs = submit(root, n)
        try:
            running = wait_running(backend, ids, timeout_s=180)
            log(f"{running} of {n} running")
            box: dict[str, Any] = {}

            @dg.op
            def poll_loop(context: dg.OpExecutionContext) -> None:
                box["modes"] = measure(backend, ids, outputs, rounds, lines, floods,
                                       context.log.info)

            @dg.job
            def bench_poll_logs() -> None:
                poll_loop()

            with dg.instance_for_test() as instance:
                bench_poll_logs.execute_in_process(instance=instance)
        finally:
            for job_id in ids:
                backend.cancel(job_id, grace_s=0)
            wait_ended(backend, ids, timeout_s=60)
    return {"jobs": n, "running": running, "rounds": rounds, "lines_per_job": lines,
            "flooding_jobs": floods, "modes": box["modes"]}


def wait_ended(backend: LocalBackend, ids: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(s.finished for s in backend.status(ids).values()):
            return
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--lines", type=int, default=5,
                        help="lines each job's program prints between busy polls")
    parser.add_argument("--floods", type=int, default=10,
                        help="jobs that also print 1 MB to stderr between busy polls")
    args = parser.parse_args()
    result = run(args.jobs, args.rounds, args.lines, args.floods)
    modes = result["modes"]
    base = modes["status"]["median_ms"]
    quiet = modes["tail_quiet"]["median_ms"]
    busy = modes["tail_busy"]["median_ms"]
    added_quiet = round(modes["tail_quiet"]["watch_median_ms"]
                        - modes["status"]["watch_median_ms"], 1)
    bounds = TailBounds()
    print(json.dumps({
        "benchmark": "poll_logs", "machine": describe(), **result,
        "bounds": {"max_lines": bounds.max_lines, "max_bytes": bounds.max_bytes,
                   "message_lines": bounds.message_lines,
                   "max_messages": bounds.max_messages},
        "targets": [at_most(f"time tailing adds to a quiet poll of {args.jobs} jobs, "
                            "share of the poll without tailing",
                            round(added_quiet / base, 3) if base else None,
                            MAX_QUIET_ADDED_SHARE)],
        "figures": [
            figure(f"poll of {args.jobs} jobs, no tailing (median)", base, "ms"),
            figure(f"poll of {args.jobs} jobs, tailing, nothing new (median)", quiet, "ms"),
            figure(f"poll of {args.jobs} jobs, tailing, {args.lines} lines each + "
                   f"{args.floods} x 1 MB (median)", busy, "ms"),
            figure("of which tailing and logging, quiet poll (median)",
                   modes["tail_quiet"]["watch_median_ms"], "ms"),
            figure("of which tailing and logging, busy poll (median)",
                   modes["tail_busy"]["watch_median_ms"], "ms"),
            figure("tailing added to a quiet poll (median)", added_quiet, "ms"),
            figure("log messages per busy poll", modes["tail_busy"]["messages_per_poll"]),
        ],
    }, indent=2))


if __name__ == "__main__":
    main()
