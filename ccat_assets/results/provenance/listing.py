"""Products and runs as rows, filtered by pipeline, step, sub-group, type and status."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ccat_assets.opsdb import (
    DataProduct,
    DataProductType,
    ExecutedReductionStep,
    PhysicalCopy,
    Pipeline,
    ReductionSoftware,
    ReductionSoftwareVersion,
    ReductionStep,
    RunStatus,
)

ERS = ExecutedReductionStep


class UnknownName(LookupError):
    """A filter names a pipeline or step the ops-db does not have: an empty listing would
    read as "nothing made yet" when the name is a typo."""


def require_known(session: Session, *, pipeline: str | None, step: str | None) -> None:
    """Raise :class:`UnknownName` unless ``pipeline`` (and ``step``, within it if both are
    given) exist."""
    if pipeline and session.scalar(sa.select(Pipeline.id).where(Pipeline.name == pipeline)) \
            is None:
        known = ", ".join(session.scalars(sa.select(Pipeline.name).order_by(Pipeline.name)))
        raise UnknownName(f"no pipeline {pipeline!r} (known: {known or 'none'})")
    if step:
        query = sa.select(ReductionStep.id).where(ReductionStep.name == step)
        if pipeline:
            query = query.join(Pipeline, Pipeline.id == ReductionStep.pipeline_id).where(
                Pipeline.name == pipeline)
        if session.scalar(query.limit(1)) is None:
            where = f" in pipeline {pipeline!r}" if pipeline else ""
            raise UnknownName(f"no step {step!r}{where}")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def list_products(
    session: Session, *, pipeline: str | None = None, step: str | None = None,
    sub_group: str | None = None, product_type: DataProductType | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Products newest first, each with its run and where its copies are."""
    require_known(session, pipeline=pipeline, step=step)
    query = (
        sa.select(DataProduct, ERS.status, ERS.sub_group_key, ReductionStep.name, Pipeline.name)
        .join(ERS, ERS.id == DataProduct.executed_reduction_step_id)
        .join(ReductionStep, ReductionStep.id == ERS.reduction_step_id)
        .join(Pipeline, Pipeline.id == ReductionStep.pipeline_id)
        .order_by(DataProduct.id.desc())
    )
    if pipeline:
        query = query.where(Pipeline.name == pipeline)
    if step:
        query = query.where(ReductionStep.name == step)
    if sub_group:
        query = query.where(ERS.sub_group_key == sub_group)
    if product_type:
        query = query.where(DataProduct.data_product_type == product_type)
    if limit:
        query = query.limit(limit)
    rows = session.execute(query).all()
    copies: dict[int, list[dict[str, Any]]] = {}
    ids = [r[0].id for r in rows]
    for start in range(0, len(ids), 5000):
        for pid, status, path in session.execute(
            sa.select(PhysicalCopy.data_product_id, PhysicalCopy.status, PhysicalCopy.path)
            .where(PhysicalCopy.data_product_id.in_(ids[start:start + 5000]))
            .order_by(PhysicalCopy.id)
        ):
            copies.setdefault(pid, []).append({"status": str(status), "path": path})
    return [
        {"id": p.id, "pipeline": pipe, "step": st, "sub_group_key": key, "run_id":
         p.executed_reduction_step_id, "run_status": str(status), "type":
         str(p.data_product_type), "relative_path": p.relative_path, "name": p.name,
         "format": p.format, "size_bytes": p.size_bytes, "checksum": p.checksum,
         "quality_metrics": p.quality_metrics or {}, "warnings": p.warnings or [],
         "created_at": _iso(p.created_at), "copies": copies.get(p.id, [])}
        for p, status, key, st, pipe in rows
    ]


def list_runs(
    session: Session, *, pipeline: str | None = None, status: RunStatus | None = None,
    step: str | None = None, limit: int | None = None,
) -> list[dict[str, Any]]:
    """Runs newest first, with their software and how many products they recorded."""
    require_known(session, pipeline=pipeline, step=step)
    n_products = (sa.select(sa.func.count()).select_from(DataProduct)
                  .where(DataProduct.executed_reduction_step_id == ERS.id)
                  .scalar_subquery())
    query = (
        sa.select(ERS, ReductionStep.name, Pipeline.name, ReductionSoftware.name,
                  ReductionSoftwareVersion.version, n_products)
        .join(ReductionStep, ReductionStep.id == ERS.reduction_step_id)
        .join(Pipeline, Pipeline.id == ReductionStep.pipeline_id)
        .join(ReductionSoftwareVersion,
              ReductionSoftwareVersion.id == ERS.reduction_software_version_id)
        .join(ReductionSoftware,
              ReductionSoftware.id == ReductionSoftwareVersion.reduction_software_id)
        .order_by(ERS.id.desc())
    )
    if pipeline:
        query = query.where(Pipeline.name == pipeline)
    if status:
        query = query.where(ERS.status == status)
    if step:
        query = query.where(ReductionStep.name == step)
    if limit:
        query = query.limit(limit)
    return [
        {"id": r.id, "pipeline": pipe, "step": st, "sub_group_key": r.sub_group_key,
         "status": str(r.status), "trigger_reason": r.trigger_reason,
         "software": f"{software} {version}", "input_fingerprint": r.input_fingerprint,
         "dagster_run_id": r.dagster_run_id, "hpc_backend": r.hpc_backend,
         "hpc_job_id": r.hpc_job_id, "retry_count": r.retry_count, "exit_code": r.exit_code,
         "started_at": _iso(r.started_at), "finished_at": _iso(r.finished_at),
         "processing_time_s": r.processing_time_s, "error_message": r.error_message,
         "run_dir": r.run_dir, "products": n}
        for r, st, pipe, software, version, n in session.execute(query)
    ]
