"""The runs of a pipeline's steps, read in three set-based queries.

1. the newest COMPLETED run per (step, sub-group), with its config hash and the software
   version it ran with (the newest by id, as the executor picks upstream runs);
2. the other runs grouped by (step, sub-group, fingerprint, status): in-flight pairs and
   failure counts (only failures accumulate there, not the completed history);
3. the products (except LOG) of the newest completed runs of steps something depends on.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ccat_assets.automation.gaps import CompletedRun
from ccat_assets.opsdb import (
    IN_FLIGHT_STATUSES,
    DataProduct,
    DataProductType,
    ExecutedReductionStep,
    ReductionSoftwareVersion,
    ReductionStepConfig,
    RunStatus,
)
from ccat_assets.results.storage_lifecycle import freed_products

ERS = ExecutedReductionStep
#: Attempts that count against ``max_retries``: a cancelled run is not re-fired for ever.
FAILED_STATUSES = (RunStatus.FAILED, RunStatus.CANCELLED)


@dataclass
class RunTables:
    """Per step id: newest completed run per key, keys in flight, failures per (key, fp)."""

    completed: dict[int, dict[str, CompletedRun]] = field(default_factory=dict)
    in_flight: dict[int, set[str]] = field(default_factory=dict)
    failures: dict[int, dict[tuple[str, str], int]] = field(default_factory=dict)


def newest_completed(step_ids: Collection[int]) -> sa.Subquery:
    """Ids of the newest COMPLETED run per (step, sub-group) of ``step_ids``."""
    return (
        sa.select(sa.func.max(ERS.id).label("id"))
        .where(ERS.reduction_step_id.in_(sorted(step_ids)), ERS.status == RunStatus.COMPLETED)
        .group_by(ERS.reduction_step_id, ERS.sub_group_key)
        .subquery("newest_completed")
    )


def load_runs(session: Session, step_ids: Collection[int],
              upstream_step_ids: Collection[int]) -> RunTables:
    """The run tables of ``step_ids``.

    A completed run keeps the concrete version it ran with, not a token of the step's current
    policy: gap evaluation judges it under the policy of now, and its stored fingerprint under
    whichever policy it ran with.
    """
    tables = RunTables()
    if not step_ids:
        return tables
    step_ids = list(step_ids)
    products = _products(session, upstream_step_ids)
    newest = newest_completed(step_ids)
    rows = session.execute(
        sa.select(ERS.id, ERS.reduction_step_id, ERS.sub_group_key, ERS.input_fingerprint,
                  ERS.finished_at, ReductionStepConfig.content_hash,
                  ReductionSoftwareVersion.version)
        .join(newest, newest.c.id == ERS.id)
        .join(ReductionStepConfig, ReductionStepConfig.id == ERS.reduction_step_config_id)
        .join(ReductionSoftwareVersion,
              ReductionSoftwareVersion.id == ERS.reduction_software_version_id)
    )
    freed = freed_products(session, [pid for ps in products.values() for pid, _ in ps])
    for run_id, step_id, key, fingerprint, finished_at, config_hash, version in rows:
        tables.completed.setdefault(step_id, {})[key] = CompletedRun(
            run_id=run_id, fingerprint=fingerprint, config_hash=config_hash,
            version=version, finished_at=finished_at,
            products=tuple(products.get(run_id, ())),
            evicted=any(pid in freed for pid, _ in products.get(run_id, ())))
    others = session.execute(
        sa.select(ERS.reduction_step_id, ERS.sub_group_key, ERS.input_fingerprint, ERS.status,
                  sa.func.count())
        .where(ERS.reduction_step_id.in_(step_ids), ERS.status != RunStatus.COMPLETED)
        .group_by(ERS.reduction_step_id, ERS.sub_group_key, ERS.input_fingerprint, ERS.status)
    )
    for step_id, key, fingerprint, status, count in others:
        if RunStatus(status) in IN_FLIGHT_STATUSES:
            tables.in_flight.setdefault(step_id, set()).add(key)
        elif RunStatus(status) in FAILED_STATUSES:
            failures = tables.failures.setdefault(step_id, {})
            failures[(key, fingerprint)] = failures.get((key, fingerprint), 0) + count
    return tables


def _products(session: Session, step_ids: Collection[int]) -> dict[int, list[tuple[int, str]]]:
    """Run id -> (product id, checksum) of the newest completed runs of ``step_ids``."""
    if not step_ids:
        return {}
    newest = newest_completed(step_ids)
    rows = session.execute(
        sa.select(DataProduct.executed_reduction_step_id, DataProduct.id, DataProduct.checksum)
        .join(newest, newest.c.id == DataProduct.executed_reduction_step_id)
        .where(DataProduct.data_product_type != DataProductType.LOG)
    )
    out: dict[int, list[tuple[int, str]]] = {}
    for run_id, product_id, checksum in rows:
        out.setdefault(run_id, []).append((product_id, checksum))
    return out
