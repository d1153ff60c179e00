"""Reading what a job's program wrote since the last look, cheaply and in bounded amounts.

Why: a run shows its program's stdout/stderr in its log while the job runs, polled next to
the job's status. A poll loop may watch a thousand jobs, so one look at an output file must
cost one ``stat`` when nothing was written, and never more than a bounded read when a lot was:
the file is read from the offset where the last look stopped (never from the start), a flood
is cut to its most recent lines with a marker saying how much was left out, and a line not
yet finished by its newline waits for the next look.

The files are the run's ``logs/stdout.log`` and ``logs/stderr.log``, which every backend
writes into the run directory: a directory this process shares with the jobs (the local
machine, the cluster's shared filesystem; collection reads the outputs there too).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

#: How many skipped bytes are still scanned to count the lines they hold; past this the
#: marker names bytes, so a flood costs a bounded read.
COUNT_SCAN_BYTES = 256 * 1024


@dataclass(frozen=True)
class TailBounds:
    """What one poll may show: per job and stream at most ``max_lines`` lines of the last
    ``max_bytes`` written; in all about ``max_messages`` x ``message_lines`` lines of output,
    packed into messages of at most ``message_lines`` lines (a job's section is never
    split; the jobs past the budget are read at the next poll)."""

    max_lines: int = 20
    max_bytes: int = 8 * 1024
    #: Writing an event to Dagster's event log costs about the same for 50 lines as for
    #: 1,000 (measured: 40 x 50 lines 1.7 s, 2 x 1,000 lines well under 0.1 s), so few, big.
    message_lines: int = 1000
    max_messages: int = 2


@dataclass(frozen=True)
class Chunk:
    """New complete lines of one stream, and how much before them was left out."""

    lines: list[str]
    skipped_lines: int = 0
    #: Bytes left out whose lines were not counted (a flood beyond ``COUNT_SCAN_BYTES``).
    skipped_bytes: int = 0

    def text(self) -> str:
        marker = []
        if self.skipped_lines or self.skipped_bytes:
            plural = "" if self.skipped_lines == 1 else "s"
            what = [f"{self.skipped_lines} line{plural}"] if self.skipped_lines else []
            if self.skipped_bytes:
                what.append(f"{size_text(self.skipped_bytes)} more")
            marker = [f"\u2026 {' and '.join(what)} skipped"]
        return "\n".join(marker + self.lines)


def size_text(n: int) -> str:
    """Bytes as a person reads them: ``812 bytes``, ``1.2 MB``, ``40.0 GB``."""
    if n < 1000:
        return f"{n} bytes"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


def _decode(line: bytes) -> str:
    return line.decode(errors="replace").rstrip("\r")


@dataclass
class FileTail:
    """One output file of one job, read on from where the last look stopped."""

    path: Path
    offset: int = 0
    #: The start of a line whose newline has not been written yet.
    pending: bytes = field(default=b"", repr=False)

    def read_new(self, bounds: TailBounds, *, final: bool = False) -> Chunk | None:
        """The complete lines written since the last look (``final``: the unfinished last
        line too, the job has ended), cut to ``bounds``; None when there is nothing new."""
        try:
            size = os.stat(self.path).st_size
        except OSError:  # not written yet, or unreadable: nothing to show
            return self._flush() if final else None
        if size < self.offset:  # truncated or replaced: read the new file from its start
            self.offset, self.pending = 0, b""
        if size == self.offset:
            return self._flush() if final else None
        skipped_lines, skipped_bytes, cut_in_line = 0, 0, False
        start = self.offset
        try:
            with open(self.path, "rb") as handle:
                if size - start > bounds.max_bytes:
                    cut = size - bounds.max_bytes
                    skipped_lines, skipped_bytes = _count_skipped(handle, start, cut)
                    handle.seek(cut - 1)
                    cut_in_line = handle.read(1) != b"\n"
                    self.pending, start = b"", cut
                handle.seek(start)
                data = handle.read(size - start)
        except OSError:  # gone or unreadable since the stat: try again next poll
            return None
        self.offset = start + len(data)
        return self._split(self.pending + data, bounds, skipped_lines, skipped_bytes,
                           cut_in_line, final)

    def _split(self, data: bytes, bounds: TailBounds, skipped_lines: int, skipped_bytes: int,
               first_partial: bool, final: bool) -> Chunk | None:
        parts = data.split(b"\n")
        self.pending = parts.pop()  # after the last newline: unfinished (or empty)
        # the job ended, or a giant line with no end in sight: show it as it is
        if (final and self.pending) or len(self.pending) > bounds.max_bytes:
            parts.append(self.pending)
            self.pending = b""
        if first_partial:  # the cut fell inside a line: drop what is left of it
            if parts:
                parts.pop(0)
                skipped_lines += 1
            else:  # its end is still to come: shown then, marked as cut
                self.pending = "\u2026".encode() + self.pending
        if len(parts) > bounds.max_lines:
            skipped_lines += len(parts) - bounds.max_lines
            parts = parts[-bounds.max_lines:]
        if not parts and not skipped_lines and not skipped_bytes:
            return None
        return Chunk([_decode(p) for p in parts], skipped_lines, skipped_bytes)

    def _flush(self) -> Chunk | None:
        if not self.pending:
            return None
        line, self.pending = self.pending, b""
        return Chunk([_decode(line)])


def _count_skipped(handle, start: int, cut: int) -> tuple[int, int]:
    """The lines ended between ``start`` and ``cut``, counted in at most ``COUNT_SCAN_BYTES``,
    and the bytes beyond that scan (left uncounted)."""
    scan = min(cut - start, COUNT_SCAN_BYTES)
    handle.seek(start)
    return handle.read(scan).count(b"\n"), (cut - start) - scan


def last_lines(path: Path, n: int, max_bytes: int = 16 * 1024) -> list[str]:
    """The last ``n`` lines of a file (reading at most its last ``max_bytes``, and a line
    cut by that limit is left out); [] when the file is missing or empty."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            start = max(0, size - max_bytes)
            handle.seek(max(0, start - 1))
            data = handle.read(max_bytes + (1 if start else 0))
    except OSError:
        return []
    lines = data.rstrip(b"\n").split(b"\n")
    if start:
        lines = lines[1:]  # the byte before the window, or the end of a line it cut
    return [_decode(line) for line in lines[-n:]] if any(lines) else []
