"""Everything a step's asset needs to run a (step, sub-group): backend, runtime, staging."""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg

from ccat_assets.execution.execute import ExecutionServices, PollPolicy
from ccat_assets.settings import get_settings
from resources.dagster_storage import pool_storage_connections
from resources.hpc import make_backend, make_runtime
from resources.opsdb import OpsDBResource
from resources.staging import make_stager
from resources.worker_process import settle_worker_process


class ExecutionResource(dg.ConfigurableResource):
    """Builds the execution services from ``CCAT_WORKFLOW_MANAGER_*`` settings."""

    opsdb: OpsDBResource
    poll_min_seconds: float | None = None
    poll_max_seconds: float | None = None

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Once per run, in the run worker: its Dagster storage keeps its connections, and
        the garbage collector leaves the imported code alone."""
        pool_storage_connections(context.instance)
        settle_worker_process()

    def services(self, log: Callable[[str], None]) -> ExecutionServices:
        settings = get_settings()
        backend = make_backend(settings)
        minimum = self.poll_min_seconds or (
            settings.slurm_poll_min_seconds if backend.name == "slurm"
            else settings.job_poll_seconds)
        maximum = self.poll_max_seconds or (
            settings.slurm_poll_max_seconds if backend.name == "slurm" else 5.0)
        return ExecutionServices(
            sessions=self.opsdb.sessions(),
            backend=backend,
            runtime=make_runtime(settings),
            stager_factory=make_stager,
            base_dir=settings.pipelines_dir,
            log=log,
            poll=PollPolicy(min_s=minimum, max_s=max(minimum, maximum)),
        )
