"""The run's lines around its job: staging progress (totals, done/total at most every so
often, what was transferred), what collection found, and which last lines a failure carries
(stderr, else stdout, else the backend's ``logs``). Real files; packages are plain records."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from ccat_assets.execution.job_watch import JobOutput
from ccat_assets.execution.run_progress import (
    CoalescedLog,
    StagingProgress,
    collected_line,
    failure_tail,
)


def _package(sizes: list[int]) -> SimpleNamespace:
    return SimpleNamespace(files=[SimpleNamespace(size_bytes=n) for n in sizes])


def test_staging_says_totals_progress_at_most_every_period_and_the_end() -> None:
    lines: list[str] = []
    now = [0.0]
    packages = [_package([1_500_000, 500_000]), _package([1_000_000]), _package([2_000_000])]
    progress = StagingProgress(lines.append, "run 7", packages, every_s=10,
                               clock=lambda: now[0])
    now[0] = 4
    progress.package_done(packages[0])  # too soon after the start: no line
    now[0] = 11
    progress.package_done(packages[1])
    now[0] = 12
    progress.package_done(packages[2])  # the last: the end line says it
    progress.finished(3)
    assert lines == ["run 7: staging 4 files (5.0 MB) of 3 raw packages",
                     "run 7: staged 3 of 4 files (3.0 MB of 5.0 MB)",
                     "run 7: staged 4 of 4 files (5.0 MB); 3 transferred, 1 already staged"]


def test_a_batch_stages_with_one_log_event_every_few_seconds() -> None:
    """The first line at once; the next ones joined until the period passed; the rest when
    staging ends (each event a Dagster event stored on its own)."""
    events: list[str] = []
    now = [0.0]
    log = CoalescedLog(events.append, every_s=10, clock=lambda: now[0])
    log("run 1: staging")
    now[0] = 3
    log("run 1: staged")
    log("run 2: staging")
    assert events == ["run 1: staging"]
    now[0] = 10
    log("run 2: staged")
    assert events == ["run 1: staging", "run 1: staged\nrun 2: staging\nrun 2: staged"]
    log("run 3: staging")
    log.flush()
    log.flush()  # nothing left: no empty event
    assert events[2:] == ["run 3: staging"]


def test_collected_line_counts_products_by_type() -> None:
    products = [{"type": "SCIENCE", "size_bytes": 1200}, {"type": "LOG", "size_bytes": 10},
                {"type": "LOG", "size_bytes": 0}]
    assert collected_line(3, products) == (
        "run 3: COMPLETED with 3 products (2 LOG, 1 SCIENCE; 1.2 kB)")
    assert collected_line(4, []) == "run 4: COMPLETED with 0 products"


class LogsOnly:
    """A backend whose files are not visible here: only its ``logs`` answers."""

    name = "remote"

    def logs(self, job_id: str) -> str:
        return f"job {job_id} said\nthe last thing\n"


def test_failure_tail_prefers_stderr_then_stdout_then_the_backend(tmp_path: Path) -> None:
    out = JobOutput(tmp_path / "stdout.log", tmp_path / "stderr.log")
    assert failure_tail(out, LogsOnly(), "9", 5) == ("output", ["job 9 said", "the last thing"])
    out.stdout.write_text("progress 1\nTraceback: boom\n")
    assert failure_tail(out, LogsOnly(), "9", 1) == ("stdout", ["Traceback: boom"])
    out.stderr.write_text("error: no such file\n")
    assert failure_tail(out, LogsOnly(), "9", 5) == ("stderr", ["error: no such file"])
