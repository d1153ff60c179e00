"""Queued work in the ops-db: a PENDING ExecutedReductionStep for every queued Dagster run.

In the seeds' data flow the trigger writes the run row as PENDING and execution picks it up,
so every CCAT component reading the ops-db sees work that is waiting, and gap evaluation
counts it as in flight. Here a run can be queued by anyone (a gap sensor, a schedule, a
person in the UI, a backfill), so the rows are written from Dagster's queue: a sensor lists
the queued runs and calls :func:`record_queued`. Such a row is a *placeholder*: PENDING, no
run directory, no job, and an input fingerprint as planned at queue time.

The run's worker then claims its placeholder (``pair_rows.take_one``) and fills in what
it plans at start: no second row. A run that turns out to have nothing to do (its pair is
already COMPLETED for the same inputs, or it re-attaches to an older run's job) removes its
placeholder instead: a placeholder records no work.

Writer and worker may race for the same (run, step, sub-group). Both take the step's lock
first (:func:`lock_step`), so on both databases one of them sees the other's row.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ccat_assets.automation.inputs import PlanError, RunInputs, plan_inputs_many
from ccat_assets.opsdb import ExecutedReductionStep, Pipeline, ReductionStep, RunStatus


@dataclass(frozen=True)
class QueuedPair:
    """One (step, sub-group) a queued Dagster run will execute."""

    pipeline: str
    step: str
    sub_group_key: str


def lock_step(session: Session, pipeline_name: str, step_name: str) -> None:
    """Serialize writers of one step's run rows until the transaction ends.

    PostgreSQL: a row lock on the step. SQLite: a no-op write as the transaction's first
    statement takes the database's write lock at once; a read first would make a later
    write fail (a WAL snapshot cannot be upgraded once another writer committed).
    """
    step_id = (sa.select(ReductionStep.id).join(Pipeline)
               .where(Pipeline.name == pipeline_name, ReductionStep.name == step_name)
               .scalar_subquery())
    if session.get_bind().dialect.name == "sqlite":
        # updated_at set to itself: the step must not look changed to the gap watermark
        session.execute(sa.update(ReductionStep).where(ReductionStep.id == step_id)
                        .values(id=ReductionStep.id, updated_at=ReductionStep.updated_at)
                        .execution_options(synchronize_session=False))
    else:
        session.execute(sa.select(ReductionStep.id).where(ReductionStep.id == step_id)
                        .with_for_update())


def is_placeholder(row: ExecutedReductionStep) -> bool:
    """A row written for a queued Dagster run that no worker has claimed yet."""
    return (RunStatus(row.status) == RunStatus.PENDING and row.run_dir is None
            and row.hpc_job_id is None and row.dagster_run_id is not None)


def placeholder_clause() -> sa.ColumnElement[bool]:
    """:func:`is_placeholder` as SQL."""
    return sa.and_(ExecutedReductionStep.status == RunStatus.PENDING,
                   ExecutedReductionStep.run_dir.is_(None),
                   ExecutedReductionStep.hpc_job_id.is_(None),
                   ExecutedReductionStep.dagster_run_id.is_not(None))


def record_queued(session: Session, pairs: Iterable[QueuedPair], *, dagster_run_id: str,
                  trigger_reason: str | None, base_dir: Path, backend: str,
                  runtime: str) -> list[int]:
    """Write a placeholder for each pair of a queued run that has no row of that run yet.

    A pair whose key is not a current sub-group is skipped: the run fails on it when it
    starts, before any work. Returns the ids of the rows written. The pairs of one step (a
    batch run has tens) are planned together (:func:`plan_inputs_many`) under one step
    lock, and their existing rows and failure counts read with one query each.
    """
    by_step: dict[tuple[str, str], list[str]] = {}
    for pair in pairs:
        by_step.setdefault((pair.pipeline, pair.step), []).append(pair.sub_group_key)
    written: list[int] = []
    for (pipeline, step), keys in by_step.items():
        lock_step(session, pipeline, step)
        try:
            planned = plan_inputs_many(session, pipeline, step, keys, base_dir)
        except PlanError:
            continue
        found = [inputs for inputs in planned.values() if isinstance(inputs, RunInputs)]
        if not found:
            continue
        step_id = found[0].step.id
        have = set(session.scalars(
            sa.select(ExecutedReductionStep.sub_group_key)
            .where(ExecutedReductionStep.reduction_step_id == step_id,
                   ExecutedReductionStep.sub_group_key.in_([i.subgroup.key for i in found]),
                   ExecutedReductionStep.dagster_run_id == dagster_run_id)))
        new = [i for i in found if i.subgroup.key not in have]
        failed = failures_of(session, step_id, [(i.subgroup.key, i.fingerprint) for i in new])
        rows = [ExecutedReductionStep(
            reduction_step_id=inputs.step.id,
            reduction_software_version_id=inputs.version.id,
            reduction_step_config_id=inputs.config.id,
            sub_group_key=inputs.subgroup.key, sub_group_values=inputs.subgroup.dimensions,
            input_fingerprint=inputs.fingerprint, status=RunStatus.PENDING,
            trigger_reason=trigger_reason, dagster_run_id=dagster_run_id,
            hpc_backend=backend, container_runtime=runtime,
            retry_count=failed.get((inputs.subgroup.key, inputs.fingerprint), 0),
        ) for inputs in new]
        session.add_all(rows)
        session.flush()
        written += [row.id for row in rows]
    return written


def failures_of(session: Session, step_id: int, pairs: Collection[tuple[str, str]]
                ) -> dict[tuple[str, str], int]:
    """:func:`failures` of many (sub-group key, fingerprint) pairs of a step, in one query;
    pairs without failures are left out."""
    if not pairs:
        return {}
    keys = sorted({key for key, _ in pairs})
    wanted = set(pairs)
    ers = ExecutedReductionStep
    rows = session.execute(
        sa.select(ers.sub_group_key, ers.input_fingerprint, sa.func.count())
        .where(ers.reduction_step_id == step_id, ers.sub_group_key.in_(keys),
               ers.status == RunStatus.FAILED)
        .group_by(ers.sub_group_key, ers.input_fingerprint))
    return {(key, fp): n for key, fp, n in rows if (key, fp) in wanted}
