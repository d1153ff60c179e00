"""Partitions retired from Dagster's dynamic partition set: which keys, and since when.

A fully reduced sub-group leaves its pipeline's partition set so the UI stays fast
(``docs/scale.md``); its runs, products and lineage stay here. This table remembers the
removal, so the paths that register sub-groups as partitions leave those keys out and
``ccat-wm check`` does not report them missing. A key is restored (its row deleted) when it
is launched again or a person asks for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from ccat_assets.opsdb.base import Base
from ccat_assets.opsdb.types import UTCDateTime, utcnow

#: Rows per statement when writing or deleting many keys.
CHUNK = 1000


class RetiredPartition(Base):
    """A sub-group key removed from the dynamic partitions def ``partitions_name``."""

    __tablename__ = "retired_partition"
    id: Mapped[int] = mapped_column(primary_key=True)
    partitions_name: Mapped[str] = mapped_column(sa.String(255))
    partition_key: Mapped[str] = mapped_column(sa.Text)
    retired_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    __table_args__ = (sa.UniqueConstraint("partitions_name", "partition_key"),)


def retired_keys(session: Session, names: Collection[str]) -> dict[str, set[str]]:
    """Partitions def name -> its retired keys, for ``names``."""
    out: dict[str, set[str]] = {name: set() for name in names}
    if not names:
        return out
    rows = session.execute(sa.select(RetiredPartition.partitions_name,
                                     RetiredPartition.partition_key)
                           .where(RetiredPartition.partitions_name.in_(sorted(names))))
    for name, key in rows:
        out[name].add(key)
    return out


def mark_retired(session: Session, keys: Mapping[str, Iterable[str]],
                 at: dt.datetime | None = None) -> None:
    """Record ``keys`` (partitions def name -> keys) as retired; keys already recorded keep
    their first date.

    One ``INSERT ... ON CONFLICT DO NOTHING`` per 1,000 keys (PostgreSQL and SQLite): no
    read first, which on a table just filled by a catch-up (no statistics yet) was a
    sequential scan per chunk."""
    at = at or utcnow()
    insert = _insert_ignoring_duplicates(session)
    for name, wanted in sorted(keys.items()):
        candidates = sorted(set(wanted))
        for start in range(0, len(candidates), CHUNK):
            session.connection().execute(insert, [
                {"partitions_name": name, "partition_key": key, "retired_at": at}
                for key in candidates[start:start + CHUNK]])


def _insert_ignoring_duplicates(session: Session) -> sa.Insert:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(RetiredPartition).on_conflict_do_nothing(
            index_elements=["partitions_name", "partition_key"])
    if dialect == "sqlite":
        return sqlite.insert(RetiredPartition).on_conflict_do_nothing(
            index_elements=["partitions_name", "partition_key"])
    raise NotImplementedError(f"retired partitions on {dialect}: PostgreSQL or SQLite only")


def restore(session: Session, name: str, keys: Iterable[str]) -> None:
    """Forget the retirement of ``keys`` of ``name`` (they are partitions again)."""
    wanted = sorted(set(keys))
    for start in range(0, len(wanted), CHUNK):
        session.execute(sa.delete(RetiredPartition).where(
            RetiredPartition.partitions_name == name,
            RetiredPartition.partition_key.in_(wanted[start:start + CHUNK])))


def restore_all(session: Session, name: str) -> set[str]:
    """Forget every retirement of ``name``; returns the keys."""
    keys = retired_keys(session, [name])[name]
    session.execute(sa.delete(RetiredPartition).where(RetiredPartition.partitions_name == name))
    return keys
