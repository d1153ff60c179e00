"""Is a process that announced itself earlier still the same live process? Read from /proc.

A run worker writes its pid to the event log when it starts. Later, another process asks
whether that worker still lives. A pid alone cannot answer: the kernel reuses pids, so the
pid may now belong to an unrelated process that started after the worker died. The answer
therefore compares the live process's start time with the moment the worker announced
itself. A process that started after the announcement cannot be the one that made it.

Linux only (``/proc``), and only for processes in the caller's pid namespace. The caller
must make sure that the process it asks about ran where the question is asked.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

#: Slack between a process's start time, as computed here, and a timestamp it wrote itself.
#: Both come from the same clock on the same host; this only absorbs clock-tick rounding.
START_TOLERANCE_S = 1.0
_DEAD_STATES = frozenset({"Z", "X", "x"})  # zombie, dead: exited, not yet (or never) reaped


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    state: str  # the one-letter state of /proc/<pid>/stat
    started_at: float  # seconds since the epoch


@dataclass(frozen=True)
class Liveness:
    alive: bool
    reason: str


def process_info(pid: int, proc: Path = Path("/proc")) -> ProcessInfo | None:
    """The state and start time of ``pid``, or None when no such process exists."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces and ')'.
    fields = stat.rsplit(")", 1)[1].split()
    state, start_ticks = fields[0], int(fields[19])  # fields 3 and 22 of proc(5)
    age_s = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    return ProcessInfo(pid, state, time.time() - age_s)


def announced_process_alive(pid: int, announced_at: float, *,
                            proc: Path = Path("/proc")) -> Liveness:
    """Whether the process that announced ``pid`` at ``announced_at`` (epoch seconds) lives."""
    info = process_info(pid, proc)
    if info is None:
        return Liveness(False, f"no process with pid {pid} exists any more")
    if info.state in _DEAD_STATES:
        return Liveness(False, f"process {pid} has exited (state {info.state})")
    if info.started_at > announced_at + START_TOLERANCE_S:
        return Liveness(False, (
            f"pid {pid} now belongs to another process, started "
            f"{info.started_at - announced_at:.0f} s after the run worker announced itself"))
    return Liveness(True, f"process {pid} is alive (state {info.state})")
