"""The code location's jobs, reconstructable as a launched run worker loads them, for
running a run exactly as such a worker does (``dg.execute_job``), without the partition
checks that ``execute_in_process`` and the CLI make before a run starts: a run launched
through GraphQL gets none of them."""

from __future__ import annotations

from pathlib import Path

from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository

ROOT = Path(__file__).resolve().parents[2]


def reconstructable_job(name: str = "__ASSET_JOB") -> ReconstructableJob:
    repository = ReconstructableRepository.for_module("ccat_assets.definitions", "defs",
                                                      str(ROOT))
    return repository.get_reconstructable_job(name)
