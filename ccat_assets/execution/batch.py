"""A batch: many sub-groups of one step executed by one Dagster run, as one array job.

Why: a Dagster run costs seconds and ~100 MB before the program starts, and one SLURM job per
scan is what HPC sites ask users not to do. A batch is an execution detail only: each member
is claimed, staged, collected and failed on its own ExecutedReductionStep, exactly as a
single run (:mod:`ccat_assets.execution.execute`), so provenance cannot tell the difference. What is
shared is the submission (one array job: one ``sbatch --array``, one supervisor, one
Indexed Job) and the polling (one status call per poll for every member).

A member that fails never fails its siblings; a retried batch skips the members that
completed (``skip_completed``) and re-attaches to the jobs of those still in flight.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ccat_assets.execution.execute import (
    Busy,
    Claimed,
    Deferred,
    ExecutionServices,
    JobEnded,
    Reused,
    RunFailed,
    RunOutcome,
    claim_runs,
    fail_run,
    finish_runs,
    output_paths,
    record_submission,
    reused_outcome,
    stage_runs,
    wait_jobs,
)
from ccat_assets.execution.jobs import JobSpec, submit_array
from ccat_assets.execution.run_progress import collected_line
from ccat_assets.fault_points import reached


@dataclass
class MemberResult:
    """What became of one sub-group of a batch."""

    key: str
    run_id: int | None = None
    outcome: RunOutcome | None = None
    #: Why the member failed (its run row, if it has one, says the same).
    error: str | None = None
    #: The member already had a COMPLETED run for its current inputs (``outcome`` is that
    #: run's, reported again).
    skipped: bool = False
    #: How its run failed, when it did (exit code, the program's last lines).
    failure: RunFailed | None = None
    #: Why the member was not claimed though nothing failed (:class:`Deferred`): it is
    #: neither materialized nor failed, and automation launches it again.
    deferred: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


def batch_job_name(pipeline: str, step: str, members: Sequence[Claimed]) -> str:
    """Deterministic for the same claimed runs, so a retry finds the array it submitted."""
    token = hashlib.sha256("\n".join(str(m.layout.root) for m in members).encode())
    return f"ccat-{pipeline}-{step}-b{members[0].run_id}-n{len(members)}-{token.hexdigest()[:8]}"


@dataclass(frozen=True)
class BatchStarted:
    """The members of a batch that will run (claimed; not already completed)."""

    keys: list[str]


def execute_batch(services: ExecutionServices, *, sub_group_keys: Sequence[str],
                  **options: Any) -> list[MemberResult]:
    """Run a batch to the end (:func:`iter_batch`, same options); one result per key, in
    order."""
    results = {r.key: r for final in iter_batch(services, sub_group_keys=sub_group_keys,
                                                **options)
               if not isinstance(final, BatchStarted) for r in final}
    return [results[key] for key in dict.fromkeys(sub_group_keys)]


def iter_batch(
    services: ExecutionServices,
    *,
    pipeline_name: str,
    step_name: str,
    sub_group_keys: Sequence[str],
    dagster_run_id: str | None,
    trigger_reason: str | None = None,
    max_parallel: int | None = None,
    own_run_ids: Collection[str] = (),
    defer_incomplete: bool = False,
) -> Iterator[BatchStarted | list[MemberResult]]:
    """Run every sub-group of ``sub_group_keys`` of one step as one array job.

    Yields :class:`BatchStarted` once the members are claimed, then the
    :class:`MemberResult` of members the moment they are final, so the caller reports them
    while the others still run: those that one poll found ended come together, finished
    together (:func:`ccat_assets.execution.execute.finish_runs`). ``defer_incomplete``: see
    :func:`ccat_assets.execution.execute.claim_runs`.
    """
    keys = list(dict.fromkeys(sub_group_keys))
    results = {key: MemberResult(key) for key in keys}
    claimed = _claim_all(services, pipeline_name, step_name, keys, results, dagster_run_id,
                         trigger_reason, own_run_ids, defer_incomplete)
    yield BatchStarted([key for key in keys
                        if not results[key].skipped and results[key].deferred is None])
    settled = [results[key] for key in keys
               if results[key].skipped or results[key].failed or results[key].deferred]
    if settled:
        yield settled
    specs = _stage(services, claimed, results, dagster_run_id)
    _submit(services, pipeline_name, step_name, claimed, specs, results, max_parallel)
    not_submitted = [results[key] for key in claimed if results[key].failed]
    if not_submitted:
        yield not_submitted
    jobs = {m.job_id: key for key, m in claimed.items()
            if m.job_id is not None and results[key].error is None}
    completed: list[str] = []
    for statuses in wait_jobs(services, {job_id: claimed[key].run_id
                                         for job_id, key in jobs.items()},
                              {job_id: output_paths(claimed[key].layout)
                               for job_id, key in jobs.items()},
                              {job_id: f"run {claimed[key].run_id} ({key})"
                               for job_id, key in jobs.items()}):
        ended = [jobs[status.job_id] for status in statuses]
        step = claimed[ended[0]]  # every member is of the same step
        finished = finish_runs(
            services, [JobEnded(claimed[key].run_id, claimed[key].layout, status,
                                claimed[key].reattached)
                       for key, status in zip(ended, statuses, strict=True)],
            is_final=step.is_final, processing_location_id=step.processing_location_id,
            announce=False)
        for key in ended:
            result = finished[claimed[key].run_id]
            if isinstance(result, RunFailed):
                results[key].error = result.reason
                results[key].failure = result
            else:
                results[key].outcome = result
                completed.append(collected_line(claimed[key].run_id, result.products))
        yield [results[key] for key in ended]
    # one log event for the batch: each member's own materialization already says it
    if completed:
        services.log("\n".join(completed))


def _claim_all(services: ExecutionServices, pipeline_name: str, step_name: str,
               keys: list[str], results: dict[str, MemberResult],
               dagster_run_id: str | None, trigger_reason: str | None,
               own_run_ids: Collection[str], defer_incomplete: bool) -> dict[str, Claimed]:
    """Claim every member in one transaction (or note it completed, deferred, or why it
    cannot run)."""
    claimed: dict[str, Claimed] = {}
    try:
        members = claim_runs(services, pipeline_name=pipeline_name, step_name=step_name,
                             sub_group_keys=keys, dagster_run_id=dagster_run_id,
                             trigger_reason=trigger_reason, skip_completed=True,
                             own_run_ids=own_run_ids, defer_incomplete=defer_incomplete)
    except Exception as exc:  # the step itself cannot be planned: every member says why
        members = {key: exc for key in keys}
    for key in keys:
        member = members[key]
        if isinstance(member, Exception):  # e.g. upstream incomplete: this member only
            results[key].error = str(member)
            continue
        if isinstance(member, Deferred):
            results[key].deferred = member.reason
            continue
        if isinstance(member, Busy):
            results[key].error = (f"ops-db run {member.run_id} of Dagster run "
                                  f"{member.dagster_run_id} is doing this very work; not run "
                                  "twice")
            continue
        if isinstance(member, Reused):
            results[key].skipped = True
            results[key].run_id = member.run_id
            results[key].outcome = reused_outcome(services, member.run_id)
        else:
            claimed[key] = member
            results[key].run_id = member.run_id
    return claimed


def _stage(services: ExecutionServices, claimed: dict[str, Claimed],
           results: dict[str, MemberResult], dagster_run_id: str | None) -> dict[str, JobSpec]:
    """Stage every claimed member not yet submitted, together; a staging failure fails
    that member."""
    todo = {member.run_id: key for key, member in claimed.items() if member.job_id is None}
    if not todo:
        return {}
    staged = stage_runs(services, {run_id: claimed[key].layout for run_id, key in todo.items()},
                        dagster_run_id)
    specs: dict[str, JobSpec] = {}
    for run_id, key in todo.items():
        result = staged[run_id]
        if isinstance(result, RunFailed):
            results[key].error = result.reason
        else:
            specs[key] = result
    return specs


def _submit(services: ExecutionServices, pipeline: str, step: str,
            claimed: dict[str, Claimed], specs: dict[str, JobSpec],
            results: dict[str, MemberResult], max_parallel: int | None) -> None:
    """One array job for the staged members; record every job id in one transaction."""
    if not specs:
        return
    members = [claimed[key] for key in specs]
    name = batch_job_name(pipeline, step, members)
    try:
        job_ids = submit_array(services.backend, name, list(specs.values()), max_parallel)
    except Exception as exc:
        for key, member in zip(specs, members, strict=True):
            fail_run(services, member.run_id, f"submission failed: {exc}")
            results[key].error = f"submission failed: {exc}"
        return
    record_submission(services, {m.run_id: job_id
                                 for m, job_id in zip(members, job_ids, strict=True)})
    services.log(f"batch {name}: {len(job_ids)} jobs submitted as one "
                 f"{services.backend.name} array")
    reached("after-submit")
    for key, job_id in zip(specs, job_ids, strict=True):
        claimed[key] = replace(claimed[key], job_id=job_id)
