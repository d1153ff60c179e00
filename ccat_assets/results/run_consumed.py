"""What a run consumed, in rows a person reads on its materialization: its raw packages and
the upstream products with the runs that made them.

Bounded: a map over ten thousand scans must not put ten thousand rows into every
materialization event. The first :data:`MAX_ROWS` are listed with the total count; the full
list is one ``ccat-wm lineage`` away. Pure ops-db reads, no Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from ccat_assets.opsdb import (
    DataLocation,
    DataProduct,
    ExecutedReductionStep,
    LocationType,
    PhysicalCopy,
    PhysicalCopyStatus,
    RawDataPackage,
    ReductionStep,
    run_input_data_product,
    run_input_raw_data_package,
)

#: Rows listed per table; the count beyond them is given, not the rows.
MAX_ROWS = 100

#: Where a raw package is said to be archived, best first: the archive, then anywhere else.
_LOCATION_ORDER = (LocationType.LONG_TERM_ARCHIVE, LocationType.BUFFER, LocationType.SOURCE,
                   LocationType.PROCESSING)


@dataclass(frozen=True)
class Consumed:
    """A run's inputs: the first rows of each kind and how many there are in all."""

    raw_total: int = 0
    #: name, checksum, archived_at ("<location>:<path>", or "" when no copy is present)
    raw_packages: list[dict[str, Any]] = field(default_factory=list)
    upstream_total: int = 0
    #: step, sub_group, product, product_id, run_id, dagster_run_id
    upstream: list[dict[str, Any]] = field(default_factory=list)


def consumed(session: Session, run_id: int, limit: int | None = None) -> Consumed:
    """The raw packages (by name) and upstream products (by step, sub-group, path) of a run,
    the first ``limit`` of each (default :data:`MAX_ROWS`)."""
    return consumed_by_runs(session, [run_id], limit)[run_id]


def consumed_by_runs(session: Session, run_ids: Sequence[int], limit: int | None = None
                     ) -> dict[int, Consumed]:
    """:func:`consumed` for many runs in five queries, not five per run: a batch finishes
    tens of members in one poll. Each run's rows are cut at ``limit`` by a window function,
    so one map over ten thousand scans still returns ``limit`` rows, not ten thousand."""
    limit = MAX_ROWS if limit is None else limit
    ids = sorted(set(run_ids))
    if not ids:
        return {}
    raw = run_input_raw_data_package.c
    raw_totals = _counts(session, raw.executed_reduction_step_id, ids)
    packages = _first_rows(
        session, raw.executed_reduction_step_id, [RawDataPackage.name], limit,
        sa.select(raw.executed_reduction_step_id, RawDataPackage.id, RawDataPackage.name,
                  RawDataPackage.checksum)
        .join(RawDataPackage, raw.raw_data_package_id == RawDataPackage.id)
        .where(raw.executed_reduction_step_id.in_(ids)))
    where = _archived_at(session, sorted({row[1] for row in packages}))
    up = run_input_data_product.c
    upstream_totals = _counts(session, up.executed_reduction_step_id, ids)
    producer = aliased(ExecutedReductionStep)
    upstream = _first_rows(
        session, up.executed_reduction_step_id,
        [ReductionStep.name, producer.sub_group_key, DataProduct.relative_path], limit,
        sa.select(up.executed_reduction_step_id, ReductionStep.name, producer.sub_group_key,
                  DataProduct.relative_path, DataProduct.id, producer.id,
                  producer.dagster_run_id)
        .select_from(run_input_data_product)
        .join(DataProduct, DataProduct.id == up.data_product_id)
        .join(producer, producer.id == DataProduct.executed_reduction_step_id)
        .join(ReductionStep, ReductionStep.id == producer.reduction_step_id)
        .where(up.executed_reduction_step_id.in_(ids)))
    result = {run_id: Consumed(raw_total=raw_totals.get(run_id, 0),
                               upstream_total=upstream_totals.get(run_id, 0)) for run_id in ids}
    for run_id, pid, name, checksum in packages:
        result[run_id].raw_packages.append(
            {"name": name, "checksum": checksum, "archived_at": where.get(pid, "")})
    for run_id, step, key, path, pid, rid, dagster_id in upstream:
        result[run_id].upstream.append(
            {"step": step, "sub_group": key, "product": path, "product_id": pid,
             "run_id": rid, "dagster_run_id": dagster_id or ""})
    return result


def _counts(session: Session, run_column: sa.ColumnElement[int], ids: list[int]
            ) -> dict[int, int]:
    return dict(session.execute(  # type: ignore[arg-type]
        sa.select(run_column, sa.func.count()).where(run_column.in_(ids))
        .group_by(run_column)).all())


def _first_rows(session: Session, run_column: sa.ColumnElement[int],
                order: list[Any], limit: int, query: sa.Select[Any]) -> list[sa.Row[Any]]:
    """The rows of ``query`` (whose first column is ``run_column``), the first ``limit`` of
    each run in ``order``, in that order."""
    ranked = query.add_columns(
        sa.func.row_number().over(partition_by=run_column, order_by=order).label("rank")
    ).subquery()
    columns = [c for c in ranked.c if c.name != "rank"]
    return list(session.execute(
        sa.select(*columns).where(ranked.c.rank <= limit)
        .order_by(columns[0], ranked.c.rank)).all())


def _archived_at(session: Session, package_ids: list[int]) -> dict[int, str]:
    """``<location>:<path>`` of each package's present copy, the archive's first."""
    if not package_ids:
        return {}
    rows = session.execute(
        sa.select(PhysicalCopy.raw_data_package_id, DataLocation.name,
                  DataLocation.location_type, PhysicalCopy.path)
        .join(DataLocation, DataLocation.id == PhysicalCopy.data_location_id)
        .where(PhysicalCopy.raw_data_package_id.in_(package_ids),
               PhysicalCopy.status == PhysicalCopyStatus.PRESENT)
        .order_by(PhysicalCopy.id)).all()
    rank = {t: i for i, t in enumerate(_LOCATION_ORDER)}
    best: dict[int, tuple[int, str]] = {}
    for pid, location, kind, path in rows:
        order = rank.get(LocationType(kind), len(rank))
        if pid not in best or order < best[pid][0]:
            best[pid] = (order, f"{location}:{path}")
    return {pid: text for pid, (_, text) in best.items()}
