"""The code server's forkserver is started when runs are about to be launched, not at load.

Why: a code server forks its run workers from a forkserver that imports Dagster and this
code location first (``ccat_assets/codelocation/preloaded_workers.py``). Started by the first
run, it makes that run's launch wait for those imports: the first batch's queue-and-launch
phase took 2.5 s, and 1.1 s with the forkserver already up (``bench/overhead.py --n 200``).
Started as the code location loads, every code server would pay the imports (about two CPU
seconds and 100 MB) whether it starts runs or not: the daemon replaces a code server it
starts itself every minute (``workspace.yaml``), and a code server on Kubernetes never starts
a run. So the sensors start it when runs are about to be launched: the gap sensor when it
requests runs, the queued-runs sensor when it finds newly queued ones, and only where this
code server starts the instance's runs (Dagster's default launcher, or this project's
subclass of it) and its run workers were set to fork.
"""

from __future__ import annotations

import multiprocessing.forkserver

import dagster as dg

_forking = False


def run_workers_fork() -> None:
    """Say that this process's code server forks its run workers from the forkserver."""
    global _forking
    _forking = True


def warm_forkserver(instance: dg.DagsterInstance) -> bool:
    """Start the forkserver now if runs of ``instance`` will be forked from it here; returns
    at once (the forkserver imports in its own process) and whether it was asked to start."""
    if not _forking or not isinstance(instance.run_launcher, dg.DefaultRunLauncher):
        return False
    multiprocessing.forkserver.ensure_running()
    return True
