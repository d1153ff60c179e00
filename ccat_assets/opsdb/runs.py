"""What happened: runs of a step for a sub-group, the products they made, and lineage."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ccat_assets.opsdb.base import Base, Timestamped
from ccat_assets.opsdb.enums import DataProductType, RunStatus
from ccat_assets.opsdb.pipeline import ReductionSoftwareVersion, ReductionStep, ReductionStepConfig
from ccat_assets.opsdb.types import JSONDocument, UTCDateTime, enum_column

run_input_raw_data_package = sa.Table(
    "executed_reduction_step_input_raw_data_package",
    Base.metadata,
    sa.Column(
        "executed_reduction_step_id",
        sa.ForeignKey("executed_reduction_step.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "raw_data_package_id",
        sa.ForeignKey("raw_data_package.id"),
        primary_key=True,
        index=True,
    ),
)

run_input_data_product = sa.Table(
    "executed_reduction_step_input_data_product",
    Base.metadata,
    sa.Column(
        "executed_reduction_step_id",
        sa.ForeignKey("executed_reduction_step.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("data_product_id", sa.ForeignKey("data_product.id"), primary_key=True, index=True),
)

#: Product -> every raw package it descends from, kept flat so that "which raw data made this
#: map" (and the reverse, "what used this bad package") is one indexed query.
data_product_lineage = sa.Table(
    "data_product_lineage",
    Base.metadata,
    sa.Column(
        "data_product_id",
        sa.ForeignKey("data_product.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "raw_data_package_id",
        sa.ForeignKey("raw_data_package.id"),
        primary_key=True,
        index=True,
    ),
)


class ExecutedReductionStep(Timestamped, Base):
    """One run of one step for one sub-group; one Dagster run (or batch member) each."""

    __tablename__ = "executed_reduction_step"
    id: Mapped[int] = mapped_column(primary_key=True)
    reduction_step_id: Mapped[int] = mapped_column(
        sa.ForeignKey("reduction_step.id", ondelete="CASCADE")
    )
    reduction_software_version_id: Mapped[int] = mapped_column(
        sa.ForeignKey("reduction_software_version.id")
    )
    reduction_step_config_id: Mapped[int] = mapped_column(
        sa.ForeignKey("reduction_step_config.id")
    )
    sub_group_key: Mapped[str] = mapped_column(sa.String(512))
    sub_group_values: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    input_fingerprint: Mapped[str] = mapped_column(sa.String(80))
    status: Mapped[RunStatus] = mapped_column(
        enum_column(RunStatus), default=RunStatus.PENDING, index=True
    )
    trigger_reason: Mapped[str | None] = mapped_column(sa.String(64))
    dagster_run_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    hpc_backend: Mapped[str | None] = mapped_column(sa.String(32))
    container_runtime: Mapped[str | None] = mapped_column(sa.String(32))
    hpc_job_id: Mapped[str | None] = mapped_column(sa.String(128))
    retry_count: Mapped[int] = mapped_column(default=0)
    execution_command: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    run_dir: Mapped[str | None] = mapped_column(sa.String(2048))
    exit_code: Mapped[int | None]
    processing_time_s: Mapped[float | None]
    peak_memory_gb: Mapped[float | None]
    cpu_hours: Mapped[float | None]
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    submitted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    step: Mapped[ReductionStep] = relationship()
    software_version: Mapped[ReductionSoftwareVersion] = relationship()
    config: Mapped[ReductionStepConfig] = relationship()
    products: Mapped[list[DataProduct]] = relationship(
        back_populates="run", order_by="DataProduct.relative_path"
    )

    __table_args__ = (
        sa.Index("ix_ers_step_key_status", "reduction_step_id", "sub_group_key", "status"),
    )


class DataProduct(Timestamped, Base):
    __tablename__ = "data_product"
    id: Mapped[int] = mapped_column(primary_key=True)
    executed_reduction_step_id: Mapped[int] = mapped_column(
        sa.ForeignKey("executed_reduction_step.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(512))
    relative_path: Mapped[str] = mapped_column(sa.String(2048))
    data_product_type: Mapped[DataProductType] = mapped_column(
        enum_column(DataProductType), index=True
    )
    format: Mapped[str | None] = mapped_column(sa.String(32))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    checksum: Mapped[str] = mapped_column(sa.String(80))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONDocument, default=dict)
    quality_metrics: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    warnings: Mapped[list[str]] = mapped_column(JSONDocument, default=list)

    run: Mapped[ExecutedReductionStep] = relationship(back_populates="products")

    # Collecting a run twice must record nothing new.
    __table_args__ = (sa.UniqueConstraint("executed_reduction_step_id", "relative_path"),)
