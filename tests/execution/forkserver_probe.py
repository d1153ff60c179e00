"""What a run worker forked by the preloaded forkserver finds: run in that worker by
``test_exec_preloaded_workers.py`` (a module of its own, so the forkserver can import it)."""

from __future__ import annotations

import os
from multiprocessing.queues import SimpleQueue
from typing import Any


def _tcp_ports_by_inode() -> dict[str, int]:
    """Socket inode -> remote port of this process's TCP connections (IPv4 and IPv6)."""
    ports: dict[str, int] = {}
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]  # noqa: SIM115 - /proc, tiny
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            ports[fields[9]] = int(fields[2].rsplit(":", 1)[1], 16)
    return ports


def inherited_database_handles(database_file: str | None) -> list[str]:
    """This process's descriptors that reach a database: a TCP connection to port 5432 or
    the SQLite file; read first thing in the worker, so inherited from the forkserver."""
    ports = _tcp_ports_by_inode()
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and ports.get(target[8:-1]) == 5432:
            found.append(f"fd {fd}: PostgreSQL connection")
        elif database_file and target.startswith(database_file):
            found.append(f"fd {fd}: {target}")
    return found


def report(queue: SimpleQueue, database_file: str | None) -> None:
    """Put what the worker inherited and what ``defs()`` gives it on ``queue``."""
    handles = inherited_database_handles(database_file)
    from ccat_assets.codelocation import prebuilt_definitions
    from ccat_assets.definitions import defs

    built = prebuilt_definitions.built_for_this_worker()
    loaded = defs()
    result: dict[str, Any] = {
        "inherited_database_handles": handles,
        "built_by_the_forkserver": built is not None,
        "defs_returns_them": loaded is built,
        "asset_keys": sorted(k.to_user_string() for k in loaded.resolve_all_asset_keys()),
    }
    queue.put(result)
