"""The sensor cursor: where in the stream of RawDataPackage arrivals the last tick stopped.

Arrivals are followed by ``(updated_at, id)``, an indexed range scan, so a tick reads only
the packages that are new or changed since the last one. The cursor is JSON so it can grow
fields without breaking old cursors.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, replace

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ccat_assets.opsdb import RawDataPackage


@dataclass(frozen=True)
class Cursor:
    """Last package seen (``updated_at``, id) and the pool limits last written to Dagster."""

    updated_at: dt.datetime | None = None
    package_id: int = 0
    pools: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        """A cursor that cannot be read (reset by hand) starts over: re-reading arrivals only
        re-registers partitions that exist, it launches nothing twice."""
        try:
            data = json.loads(text or "{}")
            stamp = data.get("updated_at")
            return cls(updated_at=dt.datetime.fromisoformat(stamp) if stamp else None,
                       package_id=int(data.get("package_id", 0)), pools=data.get("pools"))
        except (ValueError, TypeError, AttributeError):
            return cls()

    def dump(self) -> str:
        return json.dumps({
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "package_id": self.package_id, "pools": self.pools,
        }, sort_keys=True)


@dataclass(frozen=True)
class Arrivals:
    package_ids: list[int]
    cursor: Cursor


def read_arrivals(session: Session, cursor: Cursor) -> Arrivals:
    """Packages new or changed after ``cursor``, and the cursor after them."""
    pkg = RawDataPackage
    query = sa.select(pkg.id, pkg.updated_at).order_by(pkg.updated_at, pkg.id)
    if cursor.updated_at is not None:
        query = query.where(sa.tuple_(pkg.updated_at, pkg.id)
                            > sa.tuple_(sa.literal(cursor.updated_at, pkg.updated_at.type),
                                        sa.literal(cursor.package_id)))
    rows = session.execute(query).all()
    if not rows:
        return Arrivals([], cursor)
    last_id, last_at = rows[-1]
    return Arrivals([r[0] for r in rows], replace(cursor, updated_at=last_at, package_id=last_id))
