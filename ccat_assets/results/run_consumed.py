"""What a run consumed, in rows a person reads on its materialization: its raw packages and
the upstream products with the runs that made them.

Bounded: a map over ten thousand scans must not put ten thousand rows into every
materialization event. The first :data:`MAX_ROWS` are listed with the total count; the full
list is one ``ccat-wm lineage`` away. Pure ops-db reads, no Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

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
    limit = MAX_ROWS if limit is None else limit
    raw = run_input_raw_data_package.c
    raw_total = session.scalar(sa.select(sa.func.count()).select_from(run_input_raw_data_package)
                               .where(raw.executed_reduction_step_id == run_id)) or 0
    packages = session.execute(
        sa.select(RawDataPackage.id, RawDataPackage.name, RawDataPackage.checksum)
        .join(run_input_raw_data_package, raw.raw_data_package_id == RawDataPackage.id)
        .where(raw.executed_reduction_step_id == run_id)
        .order_by(RawDataPackage.name).limit(limit)).all()
    where = _archived_at(session, [pid for pid, _, _ in packages])
    up = run_input_data_product.c
    upstream_total = session.scalar(sa.select(sa.func.count()).select_from(run_input_data_product)
                                    .where(up.executed_reduction_step_id == run_id)) or 0
    producer = ExecutedReductionStep
    upstream = session.execute(
        sa.select(ReductionStep.name, producer.sub_group_key, DataProduct.relative_path,
                  DataProduct.id, producer.id, producer.dagster_run_id)
        .select_from(run_input_data_product)
        .join(DataProduct, DataProduct.id == up.data_product_id)
        .join(producer, producer.id == DataProduct.executed_reduction_step_id)
        .join(ReductionStep, ReductionStep.id == producer.reduction_step_id)
        .where(up.executed_reduction_step_id == run_id)
        .order_by(ReductionStep.name, producer.sub_group_key, DataProduct.relative_path)
        .limit(limit)).all()
    return Consumed(
        raw_total=raw_total,
        raw_packages=[{"name": name, "checksum": checksum, "archived_at": where.get(pid, "")}
                      for pid, name, checksum in packages],
        upstream_total=upstream_total,
        upstream=[{"step": step, "sub_group": key, "product": path, "product_id": pid,
                   "run_id": rid, "dagster_run_id": dagster_id or ""}
                  for step, key, path, pid, rid, dagster_id in upstream],
    )


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
