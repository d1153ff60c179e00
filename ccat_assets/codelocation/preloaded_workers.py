"""Run workers forked ready from a process that has imported Dagster and this code location.

Why: Dagster's code server starts each run's worker with ``multiprocessing``'s *spawn* method,
a new interpreter that imports Dagster, its PostgreSQL storage and this code location before
the run does anything: about 1.5 CPU seconds and a second of wall time per run, a third of what
a batch run of 50 sub-groups costs in all (docs/batching.md). With the *forkserver* method a
helper process imports those modules once, and each worker is a fork of it with everything
already imported. The helper is single-threaded; it imports (nothing at import time here
opens a connection, a file or a thread) and builds the code location's definitions once,
closing the connections the build used (``prebuilt_definitions.py``), so the fork shares
nothing (``tests/execution/test_exec_preloaded_workers.py`` checks both). Everything else a
run uses is made in the worker after the fork, as before.

Dagster 1.13 has no setting for it: ``DagsterApiServer.__init__`` fixes its context with
``multiprocessing.get_context("spawn")`` in ``_mp_ctx``, which ``StartRun`` uses for the
worker, its event queue and its termination event. So when this code location loads in a code
server, it gives that server a forkserver context instead. This module is the one place that
touches the attribute, pinned with the Dagster version;
``tests/reliability/test_rel_run_worker_killed.py`` runs a real daemon and code server and
fails if the worker is not the forkserver's child. Everything else about the worker is
Dagster's: it announces its pid, run monitoring checks it, a kill of the code server's process
group takes it.

``CCAT_WORKFLOW_MANAGER_PRELOADED_RUN_WORKERS=false`` keeps Dagster's spawn. A code server
started anew (on every reload) starts its own forkserver, so workers always run the code the
server loaded: the sensors start it when they are about to have runs launched, so that the
first run does not wait for its imports (``resources/forkserver_warmup.py``), else the first
run does.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import sys
from multiprocessing.context import BaseContext
from typing import Any

from resources.forkserver_warmup import run_workers_fork

log = logging.getLogger(__name__)

#: What the forkserver imports once: what every run worker imports before its run starts.
#: ``dagster._cli`` is what a worker's start re-runs (the code server's main module,
#: ``dagster.__main__``); ``upath`` is imported lazily by Dagster's storage in every run.
PRELOAD = (
    "dagster",
    "dagster._cli",
    "dagster._grpc.impl",
    "dagster._core.instance.factory",
    "dagster._core.storage.root",
    "dagster_postgres",
    "upath",
    "upath.core",
    "upath.implementations.local",
    "psycopg",
    "psycopg2",
    "psycopg2.extras",
    "ccat_assets.definitions",
    "resources.execution",
    # Imported with ccat_assets.definitions already; in the forkserver it builds them.
    "ccat_assets.codelocation.prebuilt_definitions",
)
#: What the command line of the forkserver, and so of every run worker it forks, contains.
FORKSERVER_COMMAND = "multiprocessing.forkserver"
#: Dagster's multiprocessing context attribute of its gRPC server (1.13).
SERVER_CONTEXT_ATTRIBUTE = "_mp_ctx"


def code_servers() -> list[Any]:
    """The Dagster gRPC servers of this process: none in a run worker, a test, the CLI."""
    if multiprocessing.parent_process() is not None:  # a worker (forked or spawned)
        return []
    server_module = sys.modules.get("dagster._grpc.server")
    if server_module is None:  # Dagster's server was never imported here
        return []
    server_class = server_module.DagsterApiServer
    return [o for o in gc.get_objects() if isinstance(o, server_class)]


def preload_run_workers(enabled: bool) -> int:
    """Give this process's code servers a forkserver for their run workers; how many."""
    if not enabled:
        return 0
    servers = code_servers()
    if not servers:
        return 0
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    done = 0
    for server in servers:
        if not isinstance(getattr(server, SERVER_CONTEXT_ATTRIBUTE, None), BaseContext):
            log.warning("Dagster's code server has no %s: its run workers start as Dagster "
                        "starts them", SERVER_CONTEXT_ATTRIBUTE)
            continue
        setattr(server, SERVER_CONTEXT_ATTRIBUTE, context)
        done += 1
    if done:
        run_workers_fork()  # the sensors start the forkserver before the first run
    return done
