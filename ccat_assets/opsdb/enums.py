"""Enums shared by the ops-db, the specs and the CLI (names as in the CCAT ops-db)."""

from __future__ import annotations

import enum


class RunStatus(enum.StrEnum):
    PENDING = "PENDING"
    STAGING_DATA = "STAGING_DATA"
    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    COLLECTING_RESULTS = "COLLECTING_RESULTS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
IN_FLIGHT_STATUSES = frozenset(set(RunStatus) - TERMINAL_STATUSES)


class TriggerType(enum.StrEnum):
    CONTINUOUS = "CONTINUOUS"
    CRON = "CRON"
    MANUAL = "MANUAL"


class DataProductType(enum.StrEnum):
    SCIENCE = "SCIENCE"
    INTERMEDIATE = "INTERMEDIATE"
    QA_METRIC = "QA_METRIC"
    PLOT = "PLOT"
    STATISTICS = "STATISTICS"
    LOG = "LOG"


class LocationType(enum.StrEnum):
    SOURCE = "SOURCE"
    BUFFER = "BUFFER"
    LONG_TERM_ARCHIVE = "LONG_TERM_ARCHIVE"
    PROCESSING = "PROCESSING"


class StorageType(enum.StrEnum):
    DISK = "DISK"
    S3 = "S3"
    TAPE = "TAPE"


class PackageState(enum.StrEnum):
    """Where a RawDataPackage is in the data-transfer life: only ARCHIVED data is reduced."""

    WAITING = "WAITING"
    TRANSFERRING = "TRANSFERRING"
    ARCHIVED = "ARCHIVED"
    FAILED = "FAILED"


class PhysicalCopyStatus(enum.StrEnum):
    PRESENT = "PRESENT"
    STAGED = "STAGED"
    DELETION_SCHEDULED = "DELETION_SCHEDULED"
    DELETION_IN_PROGRESS = "DELETION_IN_PROGRESS"
    DELETION_POSSIBLE = "DELETION_POSSIBLE"
    DELETED = "DELETED"
    DELETION_FAILED = "DELETION_FAILED"


class VersionPolicy(enum.StrEnum):
    COMPATIBLE = "compatible"
    EXACT = "exact"
