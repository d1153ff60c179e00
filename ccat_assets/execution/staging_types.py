"""What staging hands to the manifest: one input file as the run sees it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy.orm import Session

from ccat_assets.opsdb import DataLocation, RawDataPackage


@dataclass(frozen=True)
class StagedInput:
    package_id: int
    relative_path: str
    checksum: str
    size_bytes: int
    file_type: str | None
    run_path: Path


#: Told each package once all its files are staged and verified (for the run's log).
PackageDone = Callable[[RawDataPackage], None]


class Stager(Protocol):
    def prefetch(self, packages: list[RawDataPackage]) -> None:
        """Read what staging needs to know of every file of ``packages`` at once (a batch
        stages many members, with one stager)."""

    def stage_packages(
        self, packages: list[RawDataPackage], run_input_dir: Path, *,
        progress: PackageDone | None = None,
    ) -> list[StagedInput]:
        """Stage and verify every file of ``packages``; link them under ``run_input_dir``."""


class StagerFactory(Protocol):
    def __call__(self, session: Session, processing_location: DataLocation) -> Stager: ...
