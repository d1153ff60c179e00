"""CPU of a benchmark's own processes, from a Linux control group of its own.

Machine-wide CPU (``bench/meter.py``) counts everything, so on a shared machine it counts
other people's work too. Per-process accounting misses most of an orchestrated run: job
supervisors detach themselves (their CPU is never added to an ancestor), run workers come
and go. A control group counts every process started inside it, detached or exited, and
nothing else. The benchmark moves itself into a new group before it starts anything; the
daemon, code server, run workers, supervisors and programs inherit it. Not counted: the
PostgreSQL server (its backends are children of its postmaster), which the machine-wide
figure still includes.

Needs a writable cgroup file system (root, or a delegated subtree); without one the figure
is simply not reported.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from types import TracebackType

#: cgroup v1 ``cpuacct`` hierarchy, or cgroup v2 (unified, also mounted as a hybrid's
#: ``unified``): the first one that exists.
_ROOTS = (Path("/sys/fs/cgroup/cpuacct"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))


def _own_group(root: Path) -> Path:
    """The group this process is in within the hierarchy mounted at ``root``."""
    v2 = (root / "cgroup.controllers").exists() or root.name == "unified"
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if (v2 and hierarchy == "0") or (not v2 and "cpuacct" in controllers.split(",")):
            return root / path.lstrip("/")
    raise OSError(f"no cgroup of this process under {root}")


class CpuGroup:
    """``with CpuGroup() as group: ...``; ``group.cpu_s()`` is the CPU the group's processes
    used so far, or None when no group could be made. On exit, processes still in the group
    go back to the group the benchmark came from and the group is removed."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self._parent: Path | None = None

    def __enter__(self) -> CpuGroup:
        for root in _ROOTS:
            if not (root / "cgroup.procs").exists():
                continue
            try:
                parent = _own_group(root)
                path = parent / f"ccat-bench-{uuid.uuid4().hex[:8]}"
                path.mkdir()
            except OSError:
                continue
            try:
                (path / "cgroup.procs").write_text(str(os.getpid()))
            except OSError:
                path.rmdir()
                continue
            self.path, self._parent = path, parent
            break
        return self

    def cpu_s(self) -> float | None:
        if self.path is None:
            return None
        usage = self.path / "cpuacct.usage"
        if usage.exists():
            return int(usage.read_text()) / 1e9
        for line in (self.path / "cpu.stat").read_text().splitlines():
            name, value = line.split()
            if name == "usage_usec":
                return int(value) / 1e6
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.path is None or self._parent is None:
            return
        for pid in (self.path / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):  # it exited meanwhile
                (self._parent / "cgroup.procs").write_text(pid)
        with contextlib.suppress(OSError):
            self.path.rmdir()
