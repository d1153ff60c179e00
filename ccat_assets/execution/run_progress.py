"""The run's log lines around its job: staging progress, what collection found, and the last
words of a failed program.

Why: a person watching a run in the Dagster UI should see where it is (staging 3 of 40 GB,
the job pending, collecting) and, when it failed, why, without opening the run directory.
These are text builders and small readers; :mod:`ccat_assets.execution.execute` decides when to use
them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ccat_assets.execution.job_watch import JobOutput
from ccat_assets.execution.output_tail import last_lines, size_text
from ccat_assets.opsdb import RawDataPackage

Log = Callable[[str], None]

#: Staging a large package set says how far it got at most this often.
STAGING_PROGRESS_EVERY_S = 10.0


class StagingProgress:
    """Logs a run's staging: the totals when it starts, files and bytes done while it goes
    (after a package, at most every ``every_s``), and what was transferred at the end."""

    def __init__(self, log: Log, label: str, packages: Iterable[RawDataPackage], *,
                 every_s: float = STAGING_PROGRESS_EVERY_S,
                 clock: Callable[[], float] = time.monotonic):
        self.log, self.label, self.every_s, self.clock = log, label, every_s, clock
        self.packages = list(packages)
        self.files = sum(len(p.files) for p in self.packages)
        self.bytes = sum(f.size_bytes or 0 for p in self.packages for f in p.files)
        self.files_done = self.bytes_done = self.packages_done = 0
        self._last = clock()
        log(f"{label}: staging {self.files} files ({size_text(self.bytes)}) of "
            f"{len(self.packages)} raw packages")

    def package_done(self, package: RawDataPackage) -> None:
        self.packages_done += 1
        self.files_done += len(package.files)
        self.bytes_done += sum(f.size_bytes or 0 for f in package.files)
        now = self.clock()
        if self.packages_done < len(self.packages) and now - self._last >= self.every_s:
            self._last = now
            self.log(f"{self.label}: staged {self.files_done} of {self.files} files "
                     f"({size_text(self.bytes_done)} of {size_text(self.bytes)})")

    def finished(self, transferred: int | None) -> None:
        moved = ("" if transferred is None
                 else f"; {transferred} transferred, {self.files - transferred} already staged")
        self.log(f"{self.label}: staged {self.files_done} of {self.files} files "
                 f"({size_text(self.bytes_done)}){moved}")


class CoalescedLog:
    """Log lines joined into one log event at most every ``every_s``: the first at once, the
    rest when that much time has passed, and what is left at :meth:`flush`.

    Why: every line a run logs is a Dagster event, stored on its own. Staging a batch of 50
    members said two lines per member, 100 events, where one or two say the same to a person
    watching the run."""

    def __init__(self, log: Log, *, every_s: float = STAGING_PROGRESS_EVERY_S,
                 clock: Callable[[], float] = time.monotonic):
        self.log, self.every_s, self.clock = log, every_s, clock
        self.lines: list[str] = []
        self._last: float | None = None

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        if self._last is None or self.clock() - self._last >= self.every_s:
            self.flush()

    def flush(self) -> None:
        if self.lines:
            self.log("\n".join(self.lines))
            self.lines.clear()
        self._last = self.clock()


def collected_line(run_id: int, products: list[Mapping[str, Any]]) -> str:
    """``run 12: COMPLETED with 5 products (2 INTERMEDIATE, 3 LOG; 1.2 MB)``."""
    by_type: dict[str, int] = {}
    for p in products:
        by_type[p["type"]] = by_type.get(p["type"], 0) + 1
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(by_type.items()))
    total = size_text(sum(int(p.get("size_bytes") or 0) for p in products))
    detail = f" ({kinds}; {total})" if products else ""
    return f"run {run_id}: COMPLETED with {len(products)} products{detail}"


def failure_tail(outputs: JobOutput, backend: Any, job_id: str | None,
                 lines: int) -> tuple[str, list[str]]:
    """The last ``lines`` lines a failed job's program wrote, and from which stream: its
    stderr; else its stdout (some programs report errors there); else what the backend's
    ``logs`` answers (a job whose files are not visible here, a pod's log)."""
    for stream in ("stderr", "stdout"):
        tail = last_lines(getattr(outputs, stream), lines)
        if tail:
            return stream, tail
    reader = getattr(backend, "logs", None)
    if reader is None or job_id is None:
        return "stderr", []
    try:
        text = reader(job_id)
    except Exception:  # diagnosis only: a failure to read logs must not hide the failure
        return "stderr", []
    return "output", text.rstrip("\n").splitlines()[-lines:] if text.strip() else []
