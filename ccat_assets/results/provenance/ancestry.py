"""The two questions asked most: which raw data made this product, and what used this raw
package. Each is one indexed query on the flat ``data_product_lineage`` table, whatever the
depth of the pipeline, so they stay fast for a map of tens of thousands of raw packages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ccat_assets.opsdb import (
    DataProduct,
    ExecutedReductionStep,
    Pipeline,
    RawDataPackage,
    ReductionStep,
    RunStatus,
    data_product_lineage,
)

ERS = ExecutedReductionStep
L = data_product_lineage


class UnknownPackage(LookupError):
    """No RawDataPackage with that id or name."""


def raw_ancestry_query(product_id: int) -> sa.Select:
    """(id, name, checksum, size) of every raw package ``product_id`` descends from."""
    return (
        sa.select(RawDataPackage.id, RawDataPackage.name, RawDataPackage.checksum,
                  RawDataPackage.size_bytes)
        .join(L, L.c.raw_data_package_id == RawDataPackage.id)
        .where(L.c.data_product_id == product_id)
        .order_by(RawDataPackage.id)
    )


def raw_ancestry(session: Session, product_id: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": n, "checksum": c, "size_bytes": s}
            for i, n, c, s in session.execute(raw_ancestry_query(product_id))]


def descendants_query(package_id: int) -> sa.Select:
    """Every product made (directly or through intermediates) from raw package ``package_id``,
    with its run, step and pipeline."""
    return (
        sa.select(DataProduct.id, DataProduct.relative_path, DataProduct.data_product_type,
                  DataProduct.checksum, ERS.id, ERS.status, ERS.sub_group_key,
                  ReductionStep.name, Pipeline.name)
        .join(L, L.c.data_product_id == DataProduct.id)
        .join(ERS, ERS.id == DataProduct.executed_reduction_step_id)
        .join(ReductionStep, ReductionStep.id == ERS.reduction_step_id)
        .join(Pipeline, Pipeline.id == ReductionStep.pipeline_id)
        .where(L.c.raw_data_package_id == package_id)
        .order_by(Pipeline.name, ReductionStep.step_order, ERS.sub_group_key, DataProduct.id)
    )


@dataclass(frozen=True)
class Affected:
    """What to recompute when a raw package turns out bad."""

    package: dict[str, Any]
    products: list[dict[str, Any]]
    #: (pipeline, step, sub-group) pairs whose newest completed run used the package.
    pairs: list[dict[str, Any]]


def resolve_package(session: Session, ref: str) -> RawDataPackage:
    """A raw package by id (digits) or by name."""
    package = (session.get(RawDataPackage, int(ref)) if ref.isdigit()
               else session.scalar(sa.select(RawDataPackage).filter_by(name=ref)))
    if package is None:
        raise UnknownPackage(f"no raw data package {ref!r} (give its id or its name)")
    return package


def products_using(session: Session, package: RawDataPackage) -> Affected:
    rows = session.execute(descendants_query(package.id)).all()
    newest = _newest_completed(session, {r[4] for r in rows})
    products, pairs = [], {}
    for pid, rel, ptype, checksum, run_id, status, key, step, pipeline in rows:
        current = run_id in newest
        products.append({"id": pid, "relative_path": rel, "type": str(ptype),
                         "checksum": checksum, "run_id": run_id, "run_status": str(status),
                         "pipeline": pipeline, "step": step, "sub_group_key": key,
                         "current": current})
        if current:
            pair = pairs.setdefault((pipeline, step, key), {
                "pipeline": pipeline, "step": step, "sub_group_key": key, "run_id": run_id,
                "products": 0})
            pair["products"] += 1
    return Affected(
        package={"id": package.id, "name": package.name, "checksum": package.checksum},
        products=products, pairs=list(pairs.values()))


def _newest_completed(session: Session, run_ids: set[int]) -> set[int]:
    """Those of ``run_ids`` that are the newest COMPLETED run of their (step, sub-group)."""
    if not run_ids:
        return set()
    newer = sa.orm.aliased(ERS)
    later = (sa.select(newer.id).where(newer.reduction_step_id == ERS.reduction_step_id,
                                       newer.sub_group_key == ERS.sub_group_key,
                                       newer.status == RunStatus.COMPLETED,
                                       newer.id > ERS.id).exists())
    return set(session.scalars(sa.select(ERS.id).where(
        ERS.id.in_(sorted(run_ids)), ERS.status == RunStatus.COMPLETED, ~later)))
