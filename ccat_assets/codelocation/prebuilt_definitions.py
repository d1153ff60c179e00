"""The code location's definitions, built once in the forkserver for every run worker it forks.

Why: a run worker starts by asking Dagster for its job, and Dagster builds the whole code
location for it: reading the pipelines from the ops-db, configuring the ORM's mappers on
their first use and building every asset, about 0.1 to 0.35 CPU seconds a run, a tenth of a
batch run's CPU at 50 members (py-spy over ``bench/overhead.py``, docs/batching.md). The
forkserver (``preloaded_workers.py``) imports this module last; it builds the definitions
there once, and every worker forked after it finds them built.

Which catalog the workers see: the forkserver's, read when it started, which is when the
sensors first had runs to launch in this code server (``resources/forkserver_warmup.py``).
A code server never rebuilds its own definitions: a reload replaces the server, and with it
its forkserver. So a worker's definitions are as old as its forkserver's, never older than
the code server's; built in each worker they were read at the run's start instead. A
pipeline applied without a reload waits for the reload either way.

Nothing is shared by the fork: the ops-db connections used for the build are closed before
the forkserver forks anything (``tests/execution/test_exec_preloaded_workers.py``). If the
build fails (the ops-db unreachable, not migrated), it is logged and each worker builds its
own, as before.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
from multiprocessing import forkserver
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg

log = logging.getLogger(__name__)

#: The definitions the forkserver built, inherited by every worker it forks; None elsewhere.
_BUILT: dg.Definitions | None = None


def imported_by_the_forkserver() -> bool:
    """Whether this import runs in the forkserver itself, inside
    ``multiprocessing.forkserver.main`` (its preload), not in a worker it forked."""
    if multiprocessing.parent_process() is not None:
        return False
    frame = sys._getframe()  # noqa: SLF001 - the one way to tell who imports
    while frame is not None:
        if frame.f_code is forkserver.main.__code__:
            return True
        frame = frame.f_back
    return False


def build() -> dg.Definitions | None:
    """The code location's definitions, with every ops-db connection closed afterwards."""
    from ccat_assets.codelocation.load import load_definitions
    from ccat_assets.opsdb.session import dispose_engines

    try:
        return load_definitions()
    except Exception as exc:  # each worker builds its own, as without this module
        log.warning("run workers will build the definitions themselves: %s", exc)
        return None
    finally:
        dispose_engines()


def built_for_this_worker() -> dg.Definitions | None:
    """The forkserver's definitions in a worker it forked, else None (build them)."""
    return _BUILT if multiprocessing.parent_process() is not None else None


if imported_by_the_forkserver():
    _BUILT = build()
