"""What machine a figure was measured on: CPU model and count, memory, OS, Python, Dagster.

Benchmark figures mean little without it, and results may be compared across machines, so
benchmarks embed it in their JSON and the report prints it. No host names or paths.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


#: The 1-minute load average when the benchmark started (this module is imported first thing):
#: read at the end it would count the benchmark's own work.
LOAD_AT_START = round(os.getloadavg()[0], 2)


def describe() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(), "cpus": os.cpu_count(), "memory_gib": memory_gib(),
        "os": os_name(), "kernel": platform.release(), "architecture": platform.machine(),
        "python": platform.python_version(), "dagster": package_version("dagster"),
        "load_average_1min_at_start": LOAD_AT_START,
    }
