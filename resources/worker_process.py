"""What a process started for one Dagster run does once: stop the cyclic garbage collector
from walking the imported code again and again, and at exit.

A run worker imports Dagster, its storage and this code location (about a million objects)
and then lives for one run. Python's cyclic collector walks every tracked object on each full
collection, and once more when the interpreter finalizes: after these imports that walk costs
about half a CPU second per process at exit alone, paid again by every run worker. Moving the
objects alive when the run starts to the collector's permanent generation (``gc.freeze``, as
long-lived forking servers do) skips them; at exit the process's memory goes back to the
system anyway, so collecting cycles then only costs time. Done only in a process that exists
for one run (a worker started by the code server, or ``dagster api execute_run``/
``execute_step``), never in a long-lived process such as a test session running many runs,
whose frozen garbage would never be freed.
"""

from __future__ import annotations

import atexit
import gc
import multiprocessing
import sys

_settled = False
#: Commands whose process runs one Dagster run or step and exits.
_ONE_RUN_COMMANDS = ("execute_run", "execute_step")


def started_for_one_run() -> bool:
    """This process was started to run one run (or one step) and ends with it."""
    if multiprocessing.parent_process() is not None:
        return True
    return any(arg in _ONE_RUN_COMMANDS for arg in sys.argv[1:4])


def settle_worker_process() -> None:
    """Freeze what is alive now and skip the collector at exit, once, in a one-run process."""
    global _settled
    if _settled or not started_for_one_run():
        return
    _settled = True
    gc.freeze()
    atexit.register(gc.freeze)
