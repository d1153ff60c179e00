"""Reconciliation: end the in-flight ops-db rows no live run is behind, and say so.

A row left PENDING .. COLLECTING_RESULTS by a run that is gone (a worker killed, the ops-db
restarted inside a transaction, a run that ended while the run-status sensors were down)
blocks its (step, sub-group) for ever. ``reconcile`` finds such rows with the rules of
``ccat_assets/execution/reconcile.py`` and ends them: FAILED, or CANCELLED for a canceled run. It
runs

* in ``ccat_reconcile_sensor``, every ``RECONCILE_INTERVAL_SECONDS``; its first tick after
  the daemon starts repairs whatever happened while the daemon was down;
* at the end of the run-status sensors (``sensors/run_status.py``), for the Dagster-run rows
  only, which costs one ops-db query and one run-storage query;
* as ``ccat-wm runs reconcile [--dry-run]``.

Each repair is its own short transaction that locks the row (``FOR UPDATE``) and re-checks
that nothing touched it since it was judged (status, Dagster run id and ``updated_at``), so
a run that finishes or re-attaches at the same moment is never clobbered.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ccat_assets.automation.gapstate.load import serves_location
from ccat_assets.dagster_face.retry_tags import (
    AUTO_RETRY_RUN_ID_TAG,
    PARENT_RUN_ID_TAG,
    WILL_RETRY_TAG,
)
from ccat_assets.execution.jobs import Backend
from ccat_assets.execution.queued_rows import placeholder_clause
from ccat_assets.execution.reconcile import (
    DagsterState,
    JobLife,
    Repair,
    RowState,
    judge,
    needs_job_check,
    vouched,
)
from ccat_assets.opsdb import (
    IN_FLIGHT_STATUSES,
    DataLocation,
    ExecutedReductionStep,
    Pipeline,
    ReductionStep,
    RunStatus,
)
from ccat_assets.opsdb.lifecycle import transition
from ccat_assets.opsdb.session import session_scope
from ccat_assets.opsdb.types import utcnow
from ccat_assets.settings import Settings, get_settings
from resources.hpc import make_backend
from sensors.instance import sensor_instance

Log = Callable[[str], None]

RECONCILE_INTERVAL_SECONDS = 60
#: Automatic retries followed at most (Dagster's own retry limit is far lower).
MAX_RETRY_CHAIN = 20
#: Run ids per run-storage query.
RUN_ID_CHUNK = 500
_LIVE_JOB_STATES = frozenset({"pending", "running"})

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Candidate:
    row: RowState
    backend: str | None  # the row's hpc_backend
    served: bool  # its pipeline runs at this instance's processing location


def reconcile(
    instance: dg.DagsterInstance,
    *,
    dry_run: bool = False,
    include_orphans: bool = True,
    now: dt.datetime | None = None,
    log: Log = _logger.info,
    settings: Settings | None = None,
) -> list[Repair]:
    """End every in-flight row with no live run behind it; return what was (or would be)
    repaired. ``include_orphans=False`` judges only rows whose Dagster run this instance
    knows (no backend call), as the run-status sensors do."""
    settings = settings or get_settings()
    now = now or utcnow()
    orphan_age = dt.timedelta(seconds=settings.reconcile_orphan_age_seconds)
    retry_grace = dt.timedelta(seconds=settings.reconcile_retry_grace_seconds)
    with session_scope(settings.database_url) as session:
        candidates = _in_flight(session, settings.processing_location_id)
    states = dagster_states(instance, {c.row.dagster_run_id for c in candidates
                                       if c.row.dagster_run_id})
    judged: list[tuple[_Candidate, DagsterState | None]] = []
    for cand in candidates:
        state = states.get(cand.row.dagster_run_id or "")
        if vouched(state) or (include_orphans and cand.served):
            judged.append((cand, state))
    backend = _Lazy(settings)
    lives = _job_lives(backend, [c for c, s in judged
                                 if needs_job_check(c.row, s, now=now, orphan_age=orphan_age)],
                       log)
    repairs = [(cand, repair) for cand, state in judged
               if (repair := judge(cand.row, state, lives.get(cand.row.id, JobLife.UNCHECKED),
                                   now=now, orphan_age=orphan_age,
                                   retry_grace=retry_grace)) is not None]
    if dry_run:
        for _, repair in repairs:
            log(f"would move ops-db run {repair.row_id} {_move(repair)}: {repair.reason}")
        return [repair for _, repair in repairs]
    done = [(cand, repair) for cand, repair in repairs if _apply(settings, cand.row, repair, log)]
    _cancel_jobs(backend, [c for c, r in done if r.cancel_job], log)
    return [repair for _, repair in done]


def summary(repairs: Sequence[Repair], *, dry_run: bool = False) -> str:
    """One line for a sensor tick or the CLI."""
    if not repairs:
        return "no in-flight run without a live run behind it"
    verb = "would repair" if dry_run else "repaired"
    shown = ", ".join(f"{r.row_id} ({_move(r)})" for r in repairs[:20])
    more = f" and {len(repairs) - 20} more" if len(repairs) > 20 else ""
    return f"reconciliation {verb} {len(repairs)} ops-db run(s) left in flight: {shown}{more}"


def _move(repair: Repair) -> str:
    return f"{repair.old_status.value} -> {'removed' if repair.drop else repair.target.value}"


def _in_flight(session: Session, location_setting: str) -> list[_Candidate]:
    rows = session.execute(
        sa.select(ExecutedReductionStep.id, ExecutedReductionStep.status,
                  ExecutedReductionStep.dagster_run_id, ExecutedReductionStep.hpc_job_id,
                  ExecutedReductionStep.updated_at, ExecutedReductionStep.hpc_backend,
                  placeholder_clause().label("placeholder"),
                  Pipeline.processing_location_id, DataLocation.name)
        .join(ReductionStep, ReductionStep.id == ExecutedReductionStep.reduction_step_id)
        .join(Pipeline, Pipeline.id == ReductionStep.pipeline_id)
        .join(DataLocation, DataLocation.id == Pipeline.processing_location_id)
        .where(ExecutedReductionStep.status.in_(IN_FLIGHT_STATUSES))
        .order_by(ExecutedReductionStep.id))
    return [_Candidate(RowState(r.id, RunStatus(r.status), r.dagster_run_id, r.hpc_job_id,
                                r.updated_at, placeholder=bool(r.placeholder)),
                       r.hpc_backend,
                       serves_location(location_setting, r.processing_location_id, r.name))
            for r in rows]


def dagster_states(instance: dg.DagsterInstance,
                   run_ids: Iterable[str]) -> dict[str, DagsterState]:
    """What the instance says about each run, following automatic retries of failed runs."""
    ids = sorted(run_ids)
    records: dict[str, dg.RunRecord] = {}
    for start in range(0, len(ids), RUN_ID_CHUNK):
        for record in instance.get_run_records(
                filters=dg.RunsFilter(run_ids=ids[start:start + RUN_ID_CHUNK])):
            records[record.dagster_run.run_id] = record
    return {run_id: (_follow_retries(instance, records[run_id]) if run_id in records
                     else DagsterState(run_id, None)) for run_id in ids}


def _follow_retries(instance: dg.DagsterInstance, record: dg.RunRecord) -> DagsterState:
    for _ in range(MAX_RETRY_CHAIN):
        run = record.dagster_run
        if run.status != dg.DagsterRunStatus.FAILURE or not (
                run.tags.get(WILL_RETRY_TAG) == "true" or retry_undecided(instance, run)):
            break
        retry = retry_of(instance, run)
        if retry is None:
            ended = (dt.datetime.fromtimestamp(record.end_time, dt.UTC)
                     if record.end_time else utcnow())
            return DagsterState(run.run_id, run.status.value, retry_pending_since=ended)
        record = retry
    return DagsterState(record.dagster_run.run_id, record.dagster_run.status.value)


def retry_undecided(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """A failed run of which Dagster has not yet said whether it retries it.

    The process that fails a run stores the failure and the run's status first and its
    ``dagster/will_retry`` tag after, in a separate write (``handle_new_event`` in Dagster
    1.13). A reader in between sees a FAILURE run without the tag. In the load benchmark's
    chaos mode the run-failure sensor read a killed worker's run in that moment, took it for
    a run Dagster would not retry and failed its rows; the retry came a second later and ran
    the pairs again as new jobs. With run retries on, a failed run without the tag is
    treated as a retry that may still come: waited for like an announced one."""
    return (run.status == dg.DagsterRunStatus.FAILURE and WILL_RETRY_TAG not in run.tags
            and instance.run_retries_enabled)


def retry_of(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dg.RunRecord | None:
    """The retry Dagster launched for ``run`` (its tag), or any re-execution of it."""
    retry_id = run.tags.get(AUTO_RETRY_RUN_ID_TAG)
    filters = (dg.RunsFilter(run_ids=[retry_id]) if retry_id
               else dg.RunsFilter(tags={PARENT_RUN_ID_TAG: run.run_id}))
    records = instance.get_run_records(filters=filters, limit=1)
    return records[0] if records else None


class _Lazy:
    """The configured backend, made only when a job must be asked about or cancelled (a
    SLURM backend opens an SSH connection)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._backend: Backend | None = None

    def get(self) -> Backend:
        if self._backend is None:
            self._backend = make_backend(self.settings)
        return self._backend

    def name(self) -> str:
        return self.settings.hpc_backend


def _job_lives(backend: _Lazy, candidates: list[_Candidate], log: Log) -> dict[int, JobLife]:
    """Ask the backend about the jobs of ``candidates`` in one call; a job of another backend,
    or a backend that cannot answer, stays UNCHECKED (so its row is left alone)."""
    ours = [c for c in candidates if c.backend in (None, backend.name()) and c.row.hpc_job_id]
    if not ours:
        return {}
    try:
        statuses = backend.get().status(sorted({c.row.hpc_job_id or "" for c in ours}))
    except Exception as exc:  # SSH or API down: decide nothing about these rows this time
        log(f"warning: could not ask the {backend.name()} backend about {len(ours)} job(s) "
            f"({exc}); their rows are left as they are")
        return {}
    return {c.row.id: (JobLife.LIVE if statuses[c.row.hpc_job_id or ""].state
                       in _LIVE_JOB_STATES else JobLife.ENDED)
            for c in ours if (c.row.hpc_job_id or "") in statuses}


def _apply(settings: Settings, seen: RowState, repair: Repair, log: Log) -> bool:
    """End the row if it is still as judged; return whether it was changed."""
    with session_scope(settings.database_url) as session:
        row = session.get(ExecutedReductionStep, seen.id, with_for_update=True)
        if (row is None or RunStatus(row.status) != seen.status
                or row.dagster_run_id != seen.dagster_run_id
                or row.updated_at != seen.updated_at):
            log(f"ops-db run {seen.id} changed while it was judged; left as it is")
            return False
        if repair.drop:
            session.delete(row)
        else:
            transition(row, repair.target, reason=repair.reason)
    log(f"ops-db run {seen.id}: {_move(repair)}: {repair.reason}")
    return True


def _cancel_jobs(backend: _Lazy, candidates: list[_Candidate], log: Log) -> None:
    """Cancel the still-live jobs of ended rows, so no allocation is spent for nothing."""
    foreign = [c for c in candidates if c.backend not in (None, backend.name())]
    for cand in foreign:
        log(f"warning: job {cand.row.hpc_job_id} of ops-db run {cand.row.id} runs on "
            f"{cand.backend}, not {backend.name()}: not cancelled")
    ids = sorted({c.row.hpc_job_id for c in candidates
                  if c not in foreign and c.row.hpc_job_id})
    if not ids:
        return
    try:
        live = [job for job, status in backend.get().status(ids).items()
                if status.state in _LIVE_JOB_STATES]
    except Exception as exc:  # cannot tell: cancelling a finished job is harmless
        log(f"warning: could not ask the backend about jobs {ids} ({exc}); cancelling all")
        live = ids
    for job in live:
        try:
            backend.get().cancel(job)
            log(f"cancelled {backend.name()} job {job}: no run will collect it")
        except Exception as exc:
            log(f"warning: could not cancel {backend.name()} job {job}: {exc}")


@dg.sensor(
    name="ccat_reconcile_sensor",
    minimum_interval_seconds=RECONCILE_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=("Ends ops-db runs left in flight with no live Dagster run behind them and "
                 "cancels their jobs; its first tick after the daemon starts repairs what "
                 "happened while it was down."),
    tags={"ccat/kind": "reconciliation"},
)
def ccat_reconcile_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    """Launches nothing: the tick's message says what was repaired."""
    return dg.SkipReason(summary(reconcile(sensor_instance(context), log=context.log.info)))
