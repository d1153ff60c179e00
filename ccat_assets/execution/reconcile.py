"""Which in-flight ExecutedReductionSteps have no live run behind them: the pure decision.

A run worker that died, lost its database in the middle of a transaction, or ended while the
run-status sensors were not running can leave its row PENDING .. COLLECTING_RESULTS with
nothing watching it. The gap rule waits while a pair has a run in flight, so such a row
blocks its (step, sub-group) for ever. Reconciliation finds these rows and fails them.

This module only decides, from plain values, so every rule is tested without a database,
a Dagster instance or a backend; ``sensors/reconcile.py`` gathers the values and applies
the repairs.

The rules, for a row in flight:

* Its ``dagster_run_id`` names a run this Dagster instance knows. If the run (followed
  through Dagster's automatic retries) is not finished, the row is live. A run that failed
  with ``dagster/will_retry=true`` whose retry is not launched yet is live for
  ``retry_grace`` after it ended (the retry re-attaches to the job; Dagster's retry daemon
  launches it within seconds, but under load it was seen to miss the failure and never
  launch it, ``docs/reliability.md``). Otherwise nothing will
  ever finish the row: it is FAILED (CANCELLED when the run was canceled, as the run-status
  sensor would have marked it) and its HPC job, if still live, cancelled, so no allocation
  is spent on a result nobody collects (the gap sensor retries the pair within
  ``max_retries``).
* A *placeholder* (written when its run was queued, never claimed by a worker: PENDING, no
  run directory, no job) records no work, so instead of FAILED it is removed; a canceled
  run's placeholder still ends CANCELLED, as the person who canceled it expects.
* Its ``dagster_run_id`` is NULL (a run started outside Dagster: the CLI, a script, a test)
  or names a run this instance does not know (a run of an ephemeral instance, or of a
  deleted run). Nothing tells whether a process still watches it, so it is only touched
  when it has not changed for ``orphan_age`` and its job (if any) is not live on the backend:
  the job is the only evidence of life, and a long job must not be killed. Such a row is
  FAILED; there is no job to cancel.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, replace

from ccat_assets.opsdb import IN_FLIGHT_STATUSES, RunStatus

#: Dagster run statuses of a run that will not change any more.
FINISHED_RUN_STATUSES: frozenset[str] = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
REASON_PREFIX = "reconciled: "


class JobLife(enum.Enum):
    """What the backend says about a row's HPC job."""

    NONE = "none"            # the row has no job id
    LIVE = "live"            # pending or running
    ENDED = "ended"          # finished, or unknown to the backend
    UNCHECKED = "unchecked"  # not asked, or the backend could not answer


@dataclass(frozen=True)
class RowState:
    """The fields of an in-flight ExecutedReductionStep the decision reads."""

    id: int
    status: RunStatus
    dagster_run_id: str | None
    hpc_job_id: str | None
    updated_at: dt.datetime
    #: Written for a queued run and never claimed by a worker (no run directory).
    placeholder: bool = False


@dataclass(frozen=True)
class DagsterState:
    """What the Dagster instance says about the run behind a row.

    ``run_id`` is the newest run of its automatic-retry chain that was looked at; ``status``
    its DagsterRunStatus value, or None when the instance does not know the row's run.
    ``retry_pending_since`` is set when that run failed, will be retried, and its retry is
    not launched yet: the time it ended.
    """

    run_id: str
    status: str | None
    retry_pending_since: dt.datetime | None = None


@dataclass(frozen=True)
class Repair:
    """One row to end: its old and new status, the reason written on it, and whether its HPC
    job is to be cancelled (a finished Dagster run left it; nothing will collect it)."""

    row_id: int
    old_status: RunStatus
    reason: str
    hpc_job_id: str | None
    cancel_job: bool
    target: RunStatus = RunStatus.FAILED
    #: Remove the row instead (a placeholder of a run that ended without starting it).
    drop: bool = False


def vouched(state: DagsterState | None) -> bool:
    """Whether the Dagster instance knows the row's run (so it, not the age, decides)."""
    return state is not None and state.status is not None


def needs_job_check(row: RowState, state: DagsterState | None, *, now: dt.datetime,
                    orphan_age: dt.timedelta) -> bool:
    """Whether the decision for ``row`` depends on its job's liveness (ask the backend)."""
    return (row.status in IN_FLIGHT_STATUSES and not vouched(state)
            and row.hpc_job_id is not None and now - row.updated_at >= orphan_age)


def judge(row: RowState, state: DagsterState | None, job: JobLife, *, now: dt.datetime,
          orphan_age: dt.timedelta, retry_grace: dt.timedelta | None = None) -> Repair | None:
    """The repair ``row`` needs, or None when it is terminal or something may still run it.
    ``retry_grace`` (default ``orphan_age``): how long an announced Dagster retry may take
    to start."""
    repair = _judge(row, state, job, now=now, orphan_age=orphan_age,
                    retry_grace=orphan_age if retry_grace is None else retry_grace)
    if repair is None or not row.placeholder or repair.target == RunStatus.CANCELLED:
        return repair
    return replace(repair, drop=True, cancel_job=False, reason=(
        f"{repair.reason.removesuffix('; no live run was watching it')}; it was queued and "
        "never started, so it is removed"))


def _judge(row: RowState, state: DagsterState | None, job: JobLife, *, now: dt.datetime,
           orphan_age: dt.timedelta, retry_grace: dt.timedelta) -> Repair | None:
    if row.status not in IN_FLIGHT_STATUSES:
        return None
    if state is not None and state.status is not None:
        return _judge_vouched(row, state, now=now, retry_grace=retry_grace)
    if now - row.updated_at < orphan_age:
        return None
    if row.hpc_job_id is not None and job in (JobLife.LIVE, JobLife.UNCHECKED):
        return None
    run = (f"Dagster run {row.dagster_run_id} is unknown to this instance"
           if row.dagster_run_id else "no Dagster run recorded")
    job_text = f", its job {row.hpc_job_id} has ended" if row.hpc_job_id else ", no job"
    minutes = (now - row.updated_at).total_seconds() / 60
    return Repair(row.id, row.status, (
        f"{REASON_PREFIX}{run}{job_text}, and the row stayed {row.status.value} for "
        f"{minutes:.0f} min; no live run was watching it"), row.hpc_job_id, cancel_job=False)


def _judge_vouched(row: RowState, state: DagsterState, *, now: dt.datetime,
                   retry_grace: dt.timedelta) -> Repair | None:
    """A row whose Dagster run the instance knows: the run's status decides."""
    if state.status not in FINISHED_RUN_STATUSES:
        return None
    if state.retry_pending_since is not None and now - state.retry_pending_since < retry_grace:
        return None
    retried = ("" if state.run_id == row.dagster_run_id
               else f" (the automatic retry of {row.dagster_run_id})")
    pending = " and its announced retry never started" if state.retry_pending_since else ""
    target = RunStatus.CANCELLED if state.status == "CANCELED" else RunStatus.FAILED
    return Repair(row.id, row.status, (
        f"{REASON_PREFIX}Dagster run {state.run_id}{retried} ended {state.status}{pending} "
        f"while this run was {row.status.value}; no live run was watching it"),
        row.hpc_job_id, cancel_job=row.hpc_job_id is not None, target=target)
