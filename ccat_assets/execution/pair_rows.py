"""What a claim must know of each pair's existing run rows, read for a whole batch at once.

Why: claiming a member asks four questions of its (step, sub-group) rows: is it COMPLETED for
these inputs already, is a run of it in flight that this run should re-attach to, which
placeholder did the queue write for this run, and how often did these inputs fail. Asked
member by member that is four statements each, two hundred for a batch of fifty; asked for
the batch it is four (docs/batching.md). The answers are read under the step's lock
(:func:`~ccat_assets.execution.queued_rows.lock_step`), which every writer of new rows
takes, so they stay true until the claim commits; the in-flight rows are locked as the
member-by-member query locked them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ccat_assets.automation.inputs import RunInputs
from ccat_assets.execution.queued_rows import failures_of, placeholder_clause
from ccat_assets.opsdb import (
    IN_FLIGHT_STATUSES,
    ExecutedReductionStep,
    ReductionSoftwareVersion,
    RunStatus,
)


@dataclass(frozen=True)
class NewestCompleted:
    """The pair's newest COMPLETED run: what downstream consumes and gap evaluation compares."""

    run_id: int
    fingerprint: str
    version: str


@dataclass
class PairRows:
    """One pair's rows as a claim needs them."""

    newest_completed: NewestCompleted | None = None
    #: In-flight rows a run started (never placeholders), newest first, locked: those of the
    #: current inputs and those the claiming run's retry chain started.
    started_in_flight: list[ExecutedReductionStep] = field(default_factory=list)
    #: Unclaimed placeholders written for the claiming run or its retry chain, oldest first.
    placeholders: list[ExecutedReductionStep] = field(default_factory=list)
    #: FAILED runs of the pair for the current inputs (the next run's retry count).
    failures: int = 0

    def started_by(self, run_ids: Collection[str]) -> bool:
        """Whether one of ``run_ids`` (a run and the runs its retry chain descends from)
        started a run of the pair that is still in flight."""
        return any(r.dagster_run_id in run_ids for r in self.started_in_flight)

    def in_flight_to_adopt(self, fingerprint: str,
                           run_ids: Collection[str]) -> ExecutedReductionStep | None:
        """The newest started in-flight row of these inputs, else the newest one this run
        chain started whatever its inputs (a retry re-attaches to its first attempt's job
        even when new data changed the pair since)."""
        same = next((r for r in self.started_in_flight if r.input_fingerprint == fingerprint),
                    None)
        if same is not None:
            return same
        return next((r for r in self.started_in_flight if r.dagster_run_id in run_ids), None)


def read_pair_rows(session: Session, step_id: int, inputs: Sequence[RunInputs],
                   run_ids: Sequence[str], *, with_completed: bool) -> dict[str, PairRows]:
    """sub-group key -> its :class:`PairRows`, for every pair of ``inputs`` (one step), in at
    most four statements; ``with_completed=False`` skips the COMPLETED runs."""
    rows = {i.subgroup.key: PairRows() for i in inputs}
    if not rows:
        return rows
    keys = sorted(rows)
    ers = ExecutedReductionStep
    of_pairs = (ers.reduction_step_id == step_id, ers.sub_group_key.in_(keys))
    fingerprints = sorted({i.fingerprint for i in inputs})
    ours = ers.dagster_run_id.in_(list(run_ids)) if run_ids else sa.false()
    # In flight first, then COMPLETED: a run finishing meanwhile (its commit does not take
    # the step lock) is then seen by one read or the other. Read the other way round, a run
    # that committed COMPLETED between the two reads was in neither, and the pair ran twice.
    for row in session.scalars(
            sa.select(ers)
            .where(*of_pairs, ers.status.in_(IN_FLIGHT_STATUSES), ers.run_dir.is_not(None),
                   sa.or_(ers.input_fingerprint.in_(fingerprints), ours))
            .order_by(ers.id.desc()).with_for_update()):
        rows[row.sub_group_key].started_in_flight.append(row)
    if with_completed:
        for completed in _newest_completed(session, step_id, keys):
            rows[completed[0]].newest_completed = NewestCompleted(*completed[1:])
    if run_ids:
        for row in session.scalars(
                sa.select(ers)
                .where(*of_pairs, ers.dagster_run_id.in_(list(run_ids)), placeholder_clause())
                .order_by(ers.id)):
            rows[row.sub_group_key].placeholders.append(row)
    failed = failures_of(session, step_id, [(i.subgroup.key, i.fingerprint) for i in inputs])
    for each in inputs:
        rows[each.subgroup.key].failures = failed.get((each.subgroup.key, each.fingerprint), 0)
    return rows


def _newest_completed(session: Session, step_id: int, keys: list[str]
                      ) -> list[tuple[str, int, str, str]]:
    """(key, run id, fingerprint, software version) of each pair's newest COMPLETED run."""
    ers, rsv = ExecutedReductionStep, ReductionSoftwareVersion
    newest = (sa.select(sa.func.max(ers.id).label("id"))
              .where(ers.reduction_step_id == step_id, ers.sub_group_key.in_(keys),
                     ers.status == RunStatus.COMPLETED)
              .group_by(ers.sub_group_key).subquery())
    return [tuple(r) for r in session.execute(
        sa.select(ers.sub_group_key, ers.id, ers.input_fingerprint, rsv.version)
        .join(newest, newest.c.id == ers.id)
        .join(rsv, rsv.id == ers.reduction_software_version_id))]


def drop_rows(session: Session, placeholders: list[ExecutedReductionStep]) -> None:
    """Remove a pair's placeholders (its work is done elsewhere)."""
    for row in placeholders:
        session.delete(row)
    placeholders.clear()


def take_one(session: Session, placeholders: list[ExecutedReductionStep],
             run_ids: Sequence[str]) -> ExecutedReductionStep | None:
    """The placeholder a starting run claims (its own first, then its retry chain's in
    order), the others removed; None when there is none."""
    if not placeholders:
        return None
    order = list(run_ids)
    chosen, *extra = sorted(placeholders, key=lambda r: order.index(r.dagster_run_id))
    drop_rows(session, extra)
    placeholders.clear()
    return chosen
