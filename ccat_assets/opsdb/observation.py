"""The observation side of the ops-db: what was observed, and the raw data it produced.

data-transfer writes these in production; here ``ccat-wm ingest`` stands in for it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ccat_assets.opsdb.base import Base, Timestamped
from ccat_assets.opsdb.enums import PackageState
from ccat_assets.opsdb.types import JSONDocument, UTCDateTime, enum_column


class ObservingProgram(Base):
    __tablename__ = "observing_program"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    short_name: Mapped[str | None] = mapped_column(sa.String(64))
    description: Mapped[str | None] = mapped_column(sa.Text)


class Source(Base):
    __tablename__ = "source"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(256), unique=True)
    source_type: Mapped[str] = mapped_column(sa.String(32), default="fixed")
    ra_deg: Mapped[float | None]
    dec_deg: Mapped[float | None]


class InstrumentModule(Base):
    __tablename__ = "instrument_module"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    instrument: Mapped[str | None] = mapped_column(sa.String(128))
    description: Mapped[str | None] = mapped_column(sa.Text)


class ObsUnit(Base):
    """A planned observation: one source, one line, one observing program."""

    __tablename__ = "obs_unit"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(256), unique=True)
    source_id: Mapped[int | None] = mapped_column(sa.ForeignKey("source.id"), index=True)
    observing_program_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("observing_program.id"), index=True
    )
    instrument_module_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("instrument_module.id"), index=True
    )
    line_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    obs_mode: Mapped[str | None] = mapped_column(sa.String(64))

    source: Mapped[Source | None] = relationship()
    observing_program: Mapped[ObservingProgram | None] = relationship()


class ExecutedObsUnit(Base):
    """One executed observation: a scan."""

    __tablename__ = "executed_obs_unit"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(256), unique=True)
    obs_unit_id: Mapped[int] = mapped_column(sa.ForeignKey("obs_unit.id"), index=True)
    start_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), index=True)
    end_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(sa.String(32), default="success")
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONDocument, default=dict)

    obs_unit: Mapped[ObsUnit] = relationship()


class RawDataPackage(Timestamped, Base):
    """A bundle of raw files of one scan and one instrument module: the unit of raw input."""

    __tablename__ = "raw_data_package"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(512), unique=True)
    executed_obs_unit_id: Mapped[int] = mapped_column(
        sa.ForeignKey("executed_obs_unit.id"), index=True
    )
    instrument_module_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("instrument_module.id"), index=True
    )
    state: Mapped[PackageState] = mapped_column(
        enum_column(PackageState), default=PackageState.WAITING, index=True
    )
    checksum: Mapped[str] = mapped_column(sa.String(80))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    relative_path: Mapped[str] = mapped_column(sa.String(1024))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONDocument, default=dict)

    executed_obs_unit: Mapped[ExecutedObsUnit] = relationship()
    instrument_module: Mapped[InstrumentModule | None] = relationship()
    files: Mapped[list[RawDataFile]] = relationship(
        back_populates="package", order_by="RawDataFile.relative_path"
    )


# Sensors follow arrivals with a cursor on updated_at; this index keeps that a range scan.
sa.Index("ix_raw_data_package_updated_at_id", RawDataPackage.updated_at, RawDataPackage.id)


class RawDataFile(Base):
    """One instrument file. UUID keys, as at the telescope, where files are made offline."""

    __tablename__ = "raw_data_file"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    raw_data_package_id: Mapped[int] = mapped_column(
        sa.ForeignKey("raw_data_package.id", ondelete="CASCADE"), index=True
    )
    relative_path: Mapped[str] = mapped_column(sa.String(1024))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    checksum: Mapped[str] = mapped_column(sa.String(80))
    file_type: Mapped[str | None] = mapped_column(sa.String(32))

    package: Mapped[RawDataPackage] = relationship(back_populates="files")
    __table_args__ = (sa.UniqueConstraint("raw_data_package_id", "relative_path"),)
