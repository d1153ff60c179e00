"""Dagster's ``QueuedRunCoordinator`` with the ``run-queued`` fault point before each run it
queues, so a test can kill the daemon between creating a sensor tick's runs and queueing
them (:mod:`ccat_assets.fault_points`). Dagster has no hook of its own there that a separate
process can arm. Set as ``run_coordinator`` (module ``tests.reliability.fault_coordinator``,
the repository on ``PYTHONPATH``) by the test that needs it; otherwise identical."""

from __future__ import annotations

from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext
from dagster._core.storage.dagster_run import DagsterRun

from ccat_assets.fault_points import reached


class FaultPointRunCoordinator(QueuedRunCoordinator):
    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        reached("run-queued")
        return super().submit_run(context)
