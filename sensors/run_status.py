"""Keep the ops-db true to Dagster when a run ends without its asset code saying so.

A run canceled from the UI, or a run worker that died, leaves its ExecutedReductionStep in
flight, which would block its (step, sub-group) for ever. These sensors move such rows to
FAILED or CANCELLED (through the lifecycle), with the reason, and cancel the HPC job. A failed
run Dagster will retry is left alone: the retry re-attaches to the still-running job.

Each then runs the reconciliation (``sensors/reconcile.py``) over the rows whose Dagster run
this instance knows: it catches what the rows of this one run do not, such as a row still
naming the failed parent of a retry that itself failed before it claimed the row. It is one
ops-db query and one run-storage query; rows without a Dagster run are left to
``ccat_reconcile_sensor``.
"""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa

from ccat_assets.dagster_face.retry_tags import WILL_RETRY_TAG
from ccat_assets.execution.queued_rows import is_placeholder
from ccat_assets.opsdb import ExecutedReductionStep, RunStatus
from ccat_assets.opsdb.lifecycle import transition
from ccat_assets.opsdb.session import session_scope
from ccat_assets.settings import get_settings
from resources.hpc import make_backend
from sensors.reconcile import reconcile, retry_undecided


def settle_runs(dagster_run_id: str, status: RunStatus, reason: str) -> list[int]:
    """Mark the in-flight rows of a Dagster run ``status``; cancel their HPC jobs.

    Returns the ids of the rows changed. Rows already terminal are left as they are: the
    asset code recorded the real outcome. A placeholder the run never started (written
    when it was queued) is removed unless the run was cancelled: it records no work.
    """
    settings = get_settings()
    changed: list[tuple[int, str | None]] = []
    with session_scope(settings.database_url) as session:
        rows = session.scalars(
            sa.select(ExecutedReductionStep)
            .where(ExecutedReductionStep.dagster_run_id == dagster_run_id)
            .with_for_update())
        for row in rows:
            if RunStatus(row.status).is_terminal:
                continue
            if is_placeholder(row) and status != RunStatus.CANCELLED:
                session.delete(row)
            else:
                transition(row, status, reason=reason)
            changed.append((row.id, row.hpc_job_id))
    jobs = [job for _, job in changed if job]
    if jobs:
        backend = make_backend(settings)
        for job in jobs:
            backend.cancel(job)
    return [run_id for run_id, _ in changed]


def _reconcile_after(context: dg.RunStatusSensorContext) -> None:
    """Reconcile the Dagster-run rows; a failure here must not fail the tick (the settled
    rows above are committed, and ``ccat_reconcile_sensor`` tries again within a minute)."""
    try:
        reconcile(context.instance, include_orphans=False, log=context.log.info)
    except Exception as exc:
        context.log.warning(f"reconciliation after run {context.dagster_run.run_id} "
                            f"failed: {exc}")


def _failure_reason(context: dg.RunFailureSensorContext) -> str:
    message = context.failure_event.message or "the Dagster run failed"
    return f"Dagster run {context.dagster_run.run_id} failed: {message}"[:2000]


@dg.run_failure_sensor(
    name="ccat_run_failure_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks the ops-db runs of a failed Dagster run FAILED and cancels their jobs.",
)
def ccat_run_failure_sensor(context: dg.RunFailureSensorContext) -> None:
    # read again: the retry decision is written after the failure the sensor reacts to
    run = context.instance.get_run_by_id(context.dagster_run.run_id) or context.dagster_run
    if run.tags.get(WILL_RETRY_TAG) == "true":
        context.log.info(f"run {run.run_id} will be retried; its job is left running")
    elif retry_undecided(context.instance, run):
        context.log.info(f"run {run.run_id}: Dagster has not yet said whether it retries it; "
                         "its job is left running and reconciliation settles its rows")
    else:
        changed = settle_runs(run.run_id, RunStatus.FAILED, _failure_reason(context))
        if changed:
            context.log.info(f"run {run.run_id}: ops-db runs {changed} marked FAILED")
    _reconcile_after(context)


@dg.run_status_sensor(
    name="ccat_run_canceled_sensor",
    run_status=dg.DagsterRunStatus.CANCELED,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks the ops-db runs of a canceled Dagster run CANCELLED and cancels their jobs.",
)
def ccat_run_canceled_sensor(context: dg.RunStatusSensorContext) -> None:
    run = context.dagster_run
    changed = settle_runs(run.run_id, RunStatus.CANCELLED,
                          f"Dagster run {run.run_id} was canceled")
    if changed:
        context.log.info(f"run {run.run_id}: ops-db runs {changed} marked CANCELLED")
    _reconcile_after(context)


RUN_STATUS_SENSORS = [ccat_run_failure_sensor, ccat_run_canceled_sensor]
