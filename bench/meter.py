"""Machine-wide wall time, CPU time and memory of a benchmark phase, read from ``/proc``.

An orchestrated run spreads its cost over many processes (daemon, run workers, job
supervisors, PostgreSQL), most of them not children of the benchmark, so per-process
accounting (``getrusage``) would miss most of it. The machine-wide counters catch all of it,
and also anything else running, which is why benchmarks using this should run on a quiet
machine and say so.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from bench.cgroup_cpu import CpuGroup

#: The /proc/stat fields that are work, not waiting: user nice system idle iowait irq softirq
#: steal (guest time is already inside user).
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)

CPU_NOTE = ("machine-wide CPU seconds consumed during the phase (/proc/stat delta of user, "
            "nice, system, irq, softirq and steal over all CPUs): includes the daemon, run "
            "workers, job supervisors, the programs, PostgreSQL and anything else running")
OWN_CPU_NOTE = ("CPU seconds of the processes the benchmark started (daemon, code server, run "
                "workers, job supervisors, programs; bench/cgroup_cpu.py): not PostgreSQL's "
                "server, nor anyone else's work; null where no cgroup could be made")
MEMORY_NOTE = ("peak of MemTotal - MemAvailable (/proc/meminfo) sampled every {interval} s, "
               "minus its value at the start of the phase: memory the phase added, machine-wide")


def children_by_parent() -> dict[int, list[int]]:
    """Every process's children, from ``/proc``: the benchmarks walk a daemon's or webserver's
    tree with it (run workers, code servers) to read each process's memory."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def busy_cpu_seconds() -> float:
    """CPU seconds spent working by all CPUs since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = sum(int(fields[i]) for i in _BUSY_FIELDS if i < len(fields))
    return ticks / os.sysconf("SC_CLK_TCK")


def used_memory_bytes() -> int:
    """MemTotal - MemAvailable: memory in use that the kernel could not simply reclaim."""
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, value = line.split(":", 1)
        info[name] = int(value.split()[0]) * 1024
    return info["MemTotal"] - info["MemAvailable"]


@dataclass
class Measurement:
    wall_s: float
    cpu_s: float
    peak_memory_mb: float
    #: 1-minute load averages at the start and the end: how quiet the machine was.
    load_average: tuple[float, float]
    #: CPU of the benchmark's own processes (``bench/cgroup_cpu.py``), when measured.
    own_cpu_s: float | None = None

    def as_dict(self) -> dict[str, float | list[float] | None]:
        return {"wall_s": round(self.wall_s, 2), "cpu_s": round(self.cpu_s, 2),
                "own_cpu_s": None if self.own_cpu_s is None else round(self.own_cpu_s, 2),
                "peak_memory_mb": round(self.peak_memory_mb, 1),
                "load_average_start_end": [round(x, 2) for x in self.load_average]}


class Meter:
    """``with Meter() as meter: ...`` then ``meter.result``; memory is sampled in a thread."""

    def __init__(self, interval_s: float = 0.25, group: CpuGroup | None = None):
        self.interval_s = interval_s
        self.group = group
        self.result: Measurement | None = None
        self._stop = threading.Event()
        self._peak = 0
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._peak = max(self._peak, used_memory_bytes())

    def __enter__(self) -> Meter:
        self._load = os.getloadavg()[0]
        self._baseline = self._peak = used_memory_bytes()
        self._cpu = busy_cpu_seconds()
        self._own = self.group.cpu_s() if self.group is not None else None
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        wall = time.perf_counter() - self._started
        cpu = busy_cpu_seconds() - self._cpu
        own_now = self.group.cpu_s() if self.group is not None else None
        own = None if own_now is None or self._own is None else own_now - self._own
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, used_memory_bytes())
        self.result = Measurement(wall, cpu, (self._peak - self._baseline) / 2**20,
                                  (self._load, os.getloadavg()[0]), own)
