"""The RunStatus lifecycle of an ExecutedReductionStep, enforced in this one place.

Every status change goes through :func:`transition`; an illegal move raises instead of
silently corrupting the history that gap evaluation and provenance rely on.
"""

from __future__ import annotations

import datetime as dt

from ccat_assets.opsdb.enums import RunStatus
from ccat_assets.opsdb.runs import ExecutedReductionStep
from ccat_assets.opsdb.types import utcnow

S = RunStatus

#: Allowed moves. Beyond the seed's table: staging and submission can fail, a fast job can be
#: seen finished before it was ever seen running, and any in-flight run can be cancelled.
ALLOWED_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    S.PENDING: frozenset({S.STAGING_DATA, S.FAILED, S.CANCELLED}),
    S.STAGING_DATA: frozenset({S.SUBMITTED, S.FAILED, S.CANCELLED}),
    S.SUBMITTED: frozenset({S.RUNNING, S.COLLECTING_RESULTS, S.FAILED, S.CANCELLED}),
    S.RUNNING: frozenset({S.COLLECTING_RESULTS, S.FAILED, S.CANCELLED}),
    S.COLLECTING_RESULTS: frozenset({S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset({S.PENDING}),
    S.CANCELLED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A status change the lifecycle does not allow."""


def can_transition(current: RunStatus, target: RunStatus) -> bool:
    return target in ALLOWED_TRANSITIONS[current]


def transition(
    run: ExecutedReductionStep,
    target: RunStatus,
    *,
    reason: str | None = None,
    now: dt.datetime | None = None,
) -> None:
    """Move ``run`` to ``target``, stamping times; FAILED -> PENDING counts a retry."""
    current = RunStatus(run.status)
    if current == target:
        return
    if not can_transition(current, target):
        raise IllegalTransition(
            f"run {run.id}: {current.value} -> {target.value} is not an allowed transition"
        )
    now = now or utcnow()
    if target == S.SUBMITTED:
        run.submitted_at = run.submitted_at or now
    elif target == S.RUNNING:
        run.started_at = run.started_at or now
    elif target.is_terminal:
        run.finished_at = now
    if target == S.PENDING:
        run.retry_count += 1
        run.error_message = None
        run.finished_at = None
    if reason is not None:
        run.error_message = reason
    run.status = target
