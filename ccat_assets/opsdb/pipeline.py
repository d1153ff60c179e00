"""What to reduce, how and when: software, configs, groupings, pipelines and their steps."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ccat_assets.opsdb.base import Base, Timestamped
from ccat_assets.opsdb.enums import TriggerType, VersionPolicy
from ccat_assets.opsdb.types import JSONDocument, enum_column


class User(Base):
    __tablename__ = "ops_user"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(128), unique=True)


class ReductionSoftware(Base):
    """A containerized reduction program, treated as a black box."""

    __tablename__ = "reduction_software"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    description: Mapped[str | None] = mapped_column(sa.Text)
    ghcr_url: Mapped[str | None] = mapped_column(sa.String(512))
    github_repo_url: Mapped[str | None] = mapped_column(sa.String(512))

    versions: Mapped[list[ReductionSoftwareVersion]] = relationship(
        back_populates="software", order_by="ReductionSoftwareVersion.id"
    )


class ReductionSoftwareVersion(Timestamped, Base):
    __tablename__ = "reduction_software_version"
    id: Mapped[int] = mapped_column(primary_key=True)
    reduction_software_id: Mapped[int] = mapped_column(
        sa.ForeignKey("reduction_software.id"), index=True
    )
    version: Mapped[str] = mapped_column(sa.String(64))
    image_ref: Mapped[str] = mapped_column(sa.String(512))
    digest: Mapped[str | None] = mapped_column(sa.String(128))
    is_latest: Mapped[bool] = mapped_column(default=False)

    software: Mapped[ReductionSoftware] = relationship(back_populates="versions")
    __table_args__ = (sa.UniqueConstraint("reduction_software_id", "version"),)


class ReductionStepConfig(Timestamped, Base):
    """An immutable configuration: a change makes a new row, old runs keep theirs."""

    __tablename__ = "reduction_step_config"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128))
    config_parameters: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    environment_variables: Mapped[dict[str, str]] = mapped_column(JSONDocument, default=dict)
    command_template: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    resource_requirements: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    quality_thresholds: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    content_hash: Mapped[str] = mapped_column(sa.String(80), index=True)

    __table_args__ = (sa.UniqueConstraint("name", "content_hash"),)


class DataGrouping(Timestamped, Base):
    """What data: declarative filter rules over observation metadata, shared by pipelines."""

    __tablename__ = "data_grouping"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    description: Mapped[str | None] = mapped_column(sa.Text)
    filter_rules: Mapped[list[Any]] = mapped_column(JSONDocument, default=list)
    instrument_module_id: Mapped[int | None] = mapped_column(sa.ForeignKey("instrument_module.id"))


class GroupingPreset(Base):
    """A named grouping template with ``{placeholders}``, expanded by ``ccat-wm``."""

    __tablename__ = "grouping_preset"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    description: Mapped[str | None] = mapped_column(sa.Text)
    filter_rules_template: Mapped[list[Any]] = mapped_column(JSONDocument, default=list)
    group_by: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    parameters: Mapped[list[str]] = mapped_column(JSONDocument, default=list)


class Pipeline(Timestamped, Base):
    """A DAG of reduction steps over one grouping, at one processing location."""

    __tablename__ = "pipeline"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    description: Mapped[str | None] = mapped_column(sa.Text)
    data_grouping_id: Mapped[int] = mapped_column(sa.ForeignKey("data_grouping.id"), index=True)
    processing_location_id: Mapped[int] = mapped_column(sa.ForeignKey("data_location.id"))
    trigger_type: Mapped[TriggerType] = mapped_column(enum_column(TriggerType))
    trigger_config: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    enabled: Mapped[bool] = mapped_column(default=True)
    priority: Mapped[int] = mapped_column(default=0)
    created_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("ops_user.id"))
    spec_hash: Mapped[str | None] = mapped_column(
        sa.String(80), doc="Hash of the applied spec: a re-apply of the same spec writes nothing."
    )

    data_grouping: Mapped[DataGrouping] = relationship()
    created_by: Mapped[User | None] = relationship()
    steps: Mapped[list[ReductionStep]] = relationship(
        back_populates="pipeline", order_by="ReductionStep.step_order"
    )


reduction_step_dependency = sa.Table(
    "reduction_step_dependency",
    Base.metadata,
    sa.Column(
        "reduction_step_id",
        sa.ForeignKey("reduction_step.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "depends_on_step_id",
        sa.ForeignKey("reduction_step.id", ondelete="CASCADE"),
        primary_key=True,
    ),
)


class ReductionStep(Timestamped, Base):
    __tablename__ = "reduction_step"
    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(sa.ForeignKey("pipeline.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(64))
    description: Mapped[str | None] = mapped_column(sa.Text)
    step_order: Mapped[int] = mapped_column(default=0)
    reduction_software_id: Mapped[int] = mapped_column(sa.ForeignKey("reduction_software.id"))
    reduction_step_config_id: Mapped[int] = mapped_column(
        sa.ForeignKey("reduction_step_config.id")
    )
    group_by: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    cooldown_seconds: Mapped[int] = mapped_column(default=0)
    schedule: Mapped[str | None] = mapped_column(sa.String(128))
    max_concurrent_runs: Mapped[int | None]
    pinned_version_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("reduction_software_version.id")
    )
    version_policy: Mapped[VersionPolicy] = mapped_column(
        enum_column(VersionPolicy), default=VersionPolicy.COMPATIBLE
    )
    max_retries: Mapped[int] = mapped_column(default=0)
    batch_size: Mapped[int] = mapped_column(default=1)

    pipeline: Mapped[Pipeline] = relationship(back_populates="steps")
    software: Mapped[ReductionSoftware] = relationship()
    config: Mapped[ReductionStepConfig] = relationship()
    pinned_version: Mapped[ReductionSoftwareVersion | None] = relationship()
    depends_on: Mapped[list[ReductionStep]] = relationship(
        secondary=reduction_step_dependency,
        primaryjoin=lambda: ReductionStep.id == reduction_step_dependency.c.reduction_step_id,
        secondaryjoin=lambda: ReductionStep.id == reduction_step_dependency.c.depends_on_step_id,
        order_by=lambda: ReductionStep.step_order,
    )

    __table_args__ = (sa.UniqueConstraint("pipeline_id", "name"),)
