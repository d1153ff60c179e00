"""Where data lives: DataLocations and the PhysicalCopies of files at each of them."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ccat_assets.opsdb.base import Base, Timestamped
from ccat_assets.opsdb.enums import LocationType, PhysicalCopyStatus, StorageType
from ccat_assets.opsdb.types import UTCDateTime, enum_column


class DataLocation(Base):
    __tablename__ = "data_location"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    location_type: Mapped[LocationType] = mapped_column(enum_column(LocationType))
    storage_type: Mapped[StorageType] = mapped_column(
        enum_column(StorageType), default=StorageType.DISK
    )
    site: Mapped[str | None] = mapped_column(sa.String(64))
    host: Mapped[str | None] = mapped_column(
        sa.String(256), doc="Remote host for SFTP staging; empty for a local filesystem."
    )
    base_path: Mapped[str] = mapped_column(sa.String(1024))
    priority: Mapped[int] = mapped_column(default=0)


class PhysicalCopy(Timestamped, Base):
    """One file of a raw package, a raw file or a data product present at one location.

    A single table with exactly one owner column set replaces the ops-db's polymorphic
    copies: queries stay simple and the check constraint keeps it honest.
    """

    __tablename__ = "physical_copy"
    id: Mapped[int] = mapped_column(primary_key=True)
    data_location_id: Mapped[int] = mapped_column(sa.ForeignKey("data_location.id"), index=True)
    raw_data_package_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("raw_data_package.id", ondelete="CASCADE"), index=True
    )
    raw_data_file_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("raw_data_file.id", ondelete="CASCADE"), index=True
    )
    data_product_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("data_product.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[PhysicalCopyStatus] = mapped_column(
        enum_column(PhysicalCopyStatus), default=PhysicalCopyStatus.PRESENT, index=True
    )
    path: Mapped[str] = mapped_column(sa.String(2048))
    checksum: Mapped[str | None] = mapped_column(sa.String(80))
    verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        sa.CheckConstraint(
            "(CASE WHEN raw_data_package_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN raw_data_file_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN data_product_id IS NULL THEN 0 ELSE 1 END) = 1",
            name="exactly_one_owner",
        ),
    )
