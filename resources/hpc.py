"""Choosing the execution backend and container runtime from settings."""

from __future__ import annotations

from ccat_assets.execution.jobs import Backend, ContainerRuntime
from ccat_assets.settings import Settings
from resources.apptainer import ApptainerRuntime, HostRuntime
from resources.backends.local import LocalBackend


def make_backend(settings: Settings) -> Backend:
    if settings.hpc_backend == "local":
        return LocalBackend(settings.jobs_dir, settings.local_max_parallel)
    if settings.hpc_backend == "slurm":
        from resources.backends.slurm import SlurmBackend

        return SlurmBackend.from_settings(settings)
    if settings.hpc_backend == "kubernetes":
        from resources.backends.kubernetes import KubernetesBackend

        return KubernetesBackend.from_settings(settings)
    raise ValueError(f"unknown HPC_BACKEND {settings.hpc_backend!r}")


def make_runtime(settings: Settings) -> ContainerRuntime:
    if settings.container_runtime == "apptainer":
        return ApptainerRuntime(settings.sif_cache_dir)
    return HostRuntime()
