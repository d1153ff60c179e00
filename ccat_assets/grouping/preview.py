"""``ccat-wm grouping preview``: the sub-groups a grouping would make, creating nothing.

A scientist checks a grouping (and a step's ``group_by``) here before a pipeline runs on it:
how many sub-groups, how many packages each, and when each last changed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from ccat_assets.grouping.resolve import resolve_subgroups
from ccat_assets.opsdb.pipeline import DataGrouping


def iso_utc(stamp: dt.datetime | None) -> str | None:
    return None if stamp is None else stamp.astimezone(dt.UTC).isoformat()


def preview_rows(session: Session, grouping_row: DataGrouping,
                 group_by: Sequence[str]) -> list[dict[str, Any]]:
    """One JSON object per sub-group: key, dimensions, n_packages, newest_input_at (ISO UTC)."""
    subgroups = resolve_subgroups(
        session,
        filter_rules=list(grouping_row.filter_rules or []),
        group_by=list(group_by),
        instrument_module_id=grouping_row.instrument_module_id,
    )
    return [
        {
            "key": sub.key,
            "dimensions": dict(sub.dimensions),
            "n_packages": len(sub.raw_data_package_ids),
            "newest_input_at": iso_utc(sub.newest_input_at),
        }
        for sub in subgroups
    ]


def format_preview_table(rows: Sequence[dict[str, Any]]) -> str:
    """The human form of :func:`preview_rows`: an aligned table and a total line."""
    if not rows:
        return "no sub-groups: no raw data package matches this grouping"
    header = ("SUB-GROUP KEY", "PACKAGES", "NEWEST INPUT (UTC)")
    lines = [(str(r["key"]), str(r["n_packages"]), _short_time(r["newest_input_at"]))
             for r in rows]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(2)]
    out = [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c}" for a, b, c in [header, *lines]]
    total = sum(int(r["n_packages"]) for r in rows)
    noun = "sub-group" if len(rows) == 1 else "sub-groups"
    out.append(f"{len(rows)} {noun}, {total} packages")
    return "\n".join(line.rstrip() for line in out)


def _short_time(text: str | None) -> str:
    if text is None:
        return "-"
    return dt.datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M:%S")
