"""One (step, sub-group) run: plan -> claim -> stage -> submit -> wait -> collect.

Each phase is a short transaction, and the ExecutedReductionStep's status says which phase
the run reached, so a crashed run worker's retry picks up where it stopped: a run that finds
an in-flight row for the same fingerprint with a job id re-attaches to that job and never
submits a second one. Jobs have deterministic names, so even a submission whose job id was
not yet recorded is found again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload, sessionmaker

from ccat_assets.automation.fingerprint import is_current
from ccat_assets.automation.inputs import RunInputs, is_final_step, layout_for, plan_inputs_many
from ccat_assets.execution.job_watch import JobOutput, JobWatch
from ccat_assets.execution.jobs import Backend, ContainerRuntime, JobSpec, JobStatus
from ccat_assets.execution.manifest import build_manifest
from ccat_assets.execution.output_tail import TailBounds
from ccat_assets.execution.pair_rows import (
    NewestCompleted,
    PairRows,
    drop_rows,
    read_pair_rows,
    take_one,
)
from ccat_assets.execution.queued_rows import lock_step
from ccat_assets.execution.run_progress import (
    CoalescedLog,
    StagingProgress,
    collected_line,
    failure_tail,
)
from ccat_assets.execution.staging_types import StagerFactory
from ccat_assets.execution.upstream_view import build_view
from ccat_assets.fault_points import reached
from ccat_assets.opsdb import (
    DataLocation,
    ExecutedObsUnit,
    ExecutedReductionStep,
    ObsUnit,
    RawDataPackage,
    ReductionSoftwareVersion,
    ReductionStep,
    RunStatus,
    run_input_data_product,
    run_input_raw_data_package,
)
from ccat_assets.opsdb.lifecycle import transition
from ccat_assets.paths import join_inside, link_or_copy
from ccat_assets.results.collect import (
    CollectionError,
    CollectResult,
    DiscoveredProducts,
    collect_run,
    discover_products,
    record_products_of_runs,
)
from ccat_assets.results.contract import PathMap, RunLayout, contract_env, write_manifest
from ccat_assets.results.run_consumed import Consumed, consumed, consumed_by_runs
from ccat_assets.results.storage_lifecycle import freed_products

Log = Callable[[str], None]


class RunFailed(RuntimeError):
    """The run ended FAILED or CANCELLED; the ops-db row says why, and when its job ran,
    ``exit_code`` and ``log_tail`` (the last lines of the program's ``log_stream``) say what
    the program itself said."""

    def __init__(self, run_id: int, status: RunStatus, reason: str, *,
                 exit_code: int | None = None, log_tail: list[str] | None = None,
                 log_stream: str = "stderr", job_id: str | None = None):
        self.run_id, self.status, self.reason = run_id, status, reason
        self.exit_code, self.job_id = exit_code, job_id
        self.log_tail, self.log_stream = list(log_tail or []), log_stream
        super().__init__(f"run {run_id} {status.value}: {reason}")


@dataclass
class PollPolicy:
    """Backoff between status polls: from ``min_s``, growing by ``factor``, up to ``max_s``."""

    min_s: float = 1.0
    max_s: float = 60.0
    factor: float = 1.5
    #: How long status polls may keep failing (SSH or API down) before the run gives up
    #: waiting; the job itself keeps running and a retried run re-attaches to it.
    error_grace_s: float = 900.0


@dataclass
class ExecutionServices:
    sessions: sessionmaker[Session]
    backend: Backend
    runtime: ContainerRuntime
    stager_factory: StagerFactory
    base_dir: Path
    log: Log = print
    poll: PollPolicy = field(default_factory=PollPolicy)
    sleep: Callable[[float], None] = time.sleep
    #: How much of a job's new output one poll shows in the log, per job and stream.
    tail: TailBounds = field(default_factory=TailBounds)
    #: How many of the program's last lines a failure carries.
    failure_lines: int = 20


@dataclass
class RunOutcome:
    run_id: int
    status: RunStatus
    fingerprint: str
    sub_group_key: str
    dimensions: dict[str, Any]
    n_raw_packages: int
    software: dict[str, Any]
    run_dir: str
    job_id: str | None
    reattached: bool
    runtime: str
    backend: str
    products: list[dict[str, Any]]
    metrics: dict[str, float | None]
    warnings: list[str]
    #: The outcome re-reports an earlier COMPLETED run for the same inputs (nothing ran).
    reused: bool = False
    #: The Dagster run that recorded the ops-db run (differs from the current one if reused).
    dagster_run_id: str | None = None
    #: The first raw packages and upstream products it consumed (``run_consumed``).
    raw_packages: list[dict[str, Any]] = field(default_factory=list)
    upstream: list[dict[str, Any]] = field(default_factory=list)
    n_upstream: int = 0


def job_name(pipeline: str, step: str, run_id: int, run_dir: str | Path) -> str:
    """Deterministic, so a lost submission is found again, and unique across ops-dbs sharing
    a cluster account: run ids repeat between databases, run directories do not."""
    token = hashlib.sha256(str(run_dir).encode()).hexdigest()[:8]
    return f"ccat-{pipeline}-{step}-{run_id}-{token}"


@dataclass(frozen=True)
class Claimed:
    """A (step, sub-group) run claimed in the ops-db: new, or re-attached to one in flight."""

    run_id: int
    job_id: str | None
    status: RunStatus
    reattached: bool
    layout: RunLayout
    fingerprint: str
    #: What collection needs to know of the step, planned with the claim so that a batch
    #: does not look it up again for every member (None: look it up).
    is_final: bool | None = None
    processing_location_id: int | None = None


@dataclass(frozen=True)
class Busy:
    """Another, live Dagster run is executing the pair for the same inputs right now."""

    run_id: int
    dagster_run_id: str


@dataclass(frozen=True)
class Reused:
    """The pair's newest COMPLETED run is current for its inputs: nothing to do."""

    run_id: int


@dataclass(frozen=True)
class Deferred:
    """The pair's upstream is not complete now, and its run was launched by automation.

    Why not a failure: the gap sensor launched the pair when its upstream was complete, and
    data that arrived since (new scans of the same source) added upstream sub-groups not
    reduced yet. Nothing is wrong with the pair; its run would only count as a failed
    attempt of inputs it never saw. Nothing is claimed, its placeholder is dropped, and the
    gap sensor launches it again once the new upstream is complete.
    """

    reason: str


def claim_run(
    services: ExecutionServices, *, pipeline_name: str, step_name: str, sub_group_key: str,
    dagster_run_id: str | None, trigger_reason: str | None = None,
    skip_completed: bool = False, own_run_ids: Collection[str] = (),
    defer_incomplete: bool = False,
) -> Claimed | Reused | Busy | Deferred:
    """Plan the inputs of a (step, sub-group) and claim its run row (one transaction).

    With ``skip_completed`` a pair that already has a COMPLETED run for these exact inputs
    is not claimed: :class:`Reused` names that run, so the caller reports it again instead
    of spending HPC time on the same result. The row claimed is, in order: an in-flight run
    of the same inputs that a worker already started (re-attach to its job), the
    placeholder written when this Dagster run (or one of ``own_run_ids``, its retry chain)
    was queued, or a new row. An in-flight run of the same inputs started by an unrelated
    Dagster run (not this one, not one it retries) is :class:`Busy`: the caller waits for
    it rather than submitting the same work a second time. With ``defer_incomplete`` an
    upstream that is not complete is :class:`Deferred` (see :func:`claim_runs`).
    """
    result = claim_runs(services, pipeline_name=pipeline_name, step_name=step_name,
                        sub_group_keys=[sub_group_key], dagster_run_id=dagster_run_id,
                        trigger_reason=trigger_reason, skip_completed=skip_completed,
                        own_run_ids=own_run_ids,
                        defer_incomplete=defer_incomplete)[sub_group_key]
    if isinstance(result, Exception):
        raise result
    return result


def claim_runs(
    services: ExecutionServices, *, pipeline_name: str, step_name: str,
    sub_group_keys: Sequence[str], dagster_run_id: str | None,
    trigger_reason: str | None = None, skip_completed: bool = False,
    own_run_ids: Collection[str] = (), defer_incomplete: bool = False,
) -> dict[str, Claimed | Reused | Busy | Deferred | Exception]:
    """:func:`claim_run` for many sub-groups of one step, in one transaction.

    Why one transaction: a batch claims tens of members, and one step lock, one planning
    of the step (:func:`plan_inputs_many`) and one commit serve them all. Each member is
    claimed inside its own savepoint, so a member that cannot be claimed (upstream not
    complete, no raw data, an error) is that member's exception in the result, its writes
    undone, and its siblings are claimed all the same. With ``defer_incomplete`` (the run
    was launched by automation) a member whose upstream is not complete is
    :class:`Deferred` instead of an exception. A member this run's chain already started
    is neither: its retry re-attaches to the job, which computes the inputs it started with.
    """
    run_ids = [r for r in (dagster_run_id, *own_run_ids) if r]
    keys = list(dict.fromkeys(sub_group_keys))
    results: dict[str, Claimed | Reused | Busy | Deferred | Exception] = {}
    lines: list[str] = []
    with services.sessions.begin() as session:
        lock_step(session, pipeline_name, step_name)
        planned = plan_inputs_many(session, pipeline_name, step_name, keys, services.base_dir)
        found = [i for i in planned.values() if isinstance(i, RunInputs)]
        known = (read_pair_rows(session, found[0].step.id, found, run_ids,
                                with_completed=skip_completed) if found else {})
        for key in keys:
            inputs = planned[key]
            if isinstance(inputs, Exception):
                results[key] = inputs
                continue
            if inputs.upstream_missing and not known[key].started_by(run_ids):
                # (a run chain that started the pair re-attaches to its job below: new
                # data may have made the upstream incomplete since its first attempt)
                shown = ", ".join(inputs.upstream_missing[:5])
                reason = (f"{step_name}/{key}: upstream not complete for "
                          f"{len(inputs.upstream_missing)} sub-group(s): {shown}")
                if defer_incomplete:
                    drop_rows(session, known[key].placeholders)
                    results[key] = Deferred(reason)
                    lines.append(f"{reason}; deferred: not claimed, the gap sensor "
                                 "launches it again once they complete")
                else:
                    results[key] = RuntimeError(reason)
                continue
            try:
                with session.begin_nested():
                    results[key] = _claim_member(session, inputs, known[key], services,
                                                 dagster_run_id, trigger_reason, run_ids)
            except Exception as exc:  # this member only: its savepoint undid its writes
                results[key] = exc
                continue
            lines.append(_claim_line(step_name, key, inputs, results[key]))
    if lines:
        services.log("\n".join(line for line in lines if line))
    return results


def _claim_member(
    session: Session, inputs: RunInputs, rows: PairRows, services: ExecutionServices,
    dagster_run_id: str | None, trigger_reason: str | None, run_ids: list[str],
) -> Claimed | Reused | Busy:
    """``rows``: the pair's rows, read with the batch's (their COMPLETED run only when a
    completed pair is to be reused, not run again)."""
    done = _completed_with(session, inputs, rows.newest_completed)
    if done is not None:
        drop_rows(session, rows.placeholders)
        return Reused(done)
    taken = _claim(session, inputs, rows, services, dagster_run_id, trigger_reason, run_ids)
    if isinstance(taken, Busy):
        return taken
    run, reattached = taken
    return Claimed(run.id, run.hpc_job_id, RunStatus(run.status), reattached,
                   layout_for(services.base_dir, inputs, run.id), run.input_fingerprint,
                   is_final=inputs.is_final,
                   processing_location_id=inputs.pipeline.processing_location_id)


def _claim_line(step_name: str, key: str, inputs: RunInputs,
                result: Claimed | Reused | Busy) -> str:
    if isinstance(result, Reused):
        return (f"{step_name}/{key}: run {result.run_id} already COMPLETED for "
                f"fingerprint {inputs.fingerprint[:19]}; not run again")
    if isinstance(result, Busy):
        return ""
    return (f"run {result.run_id}: {'re-attached to' if result.reattached else 'claimed'} "
            f"{step_name}/{key} (fingerprint {result.fingerprint[:19]}, status "
            f"{result.status.value})")


def execute_partition(
    services: ExecutionServices,
    *,
    pipeline_name: str,
    step_name: str,
    sub_group_key: str,
    dagster_run_id: str | None,
    trigger_reason: str | None = None,
    force: bool = False,
    own_run_ids: Collection[str] = (),
    defer_incomplete: bool = False,
) -> RunOutcome | Deferred:
    """Run one (step, sub-group) to a terminal status and return what it produced.

    A pair already COMPLETED for its current inputs is not run again: the outcome of that
    run is returned (``reused``), unless ``force``. With ``defer_incomplete`` (the run was
    launched by automation) a pair whose upstream is not complete is :class:`Deferred`, not
    a failure: nothing is claimed or run.
    """
    def claim() -> Claimed | Reused | Busy | Deferred:
        return claim_run(services, pipeline_name=pipeline_name, step_name=step_name,
                         sub_group_key=sub_group_key, dagster_run_id=dagster_run_id,
                         trigger_reason=trigger_reason, skip_completed=not force,
                         own_run_ids=own_run_ids, defer_incomplete=defer_incomplete)

    claimed = claim()
    while isinstance(claimed, Busy):
        services.log(f"{step_name}/{sub_group_key}: ops-db run {claimed.run_id} of Dagster run "
                     f"{claimed.dagster_run_id} is doing this very work; waiting for it")
        _wait_until_ended(services, claimed.run_id)
        claimed = claim()
    if isinstance(claimed, Deferred):
        return claimed
    if isinstance(claimed, Reused):
        return reused_outcome(services, claimed.run_id)
    job_id = claimed.job_id
    if job_id is None:
        spec = stage_run(services, claimed.run_id, claimed.layout, dagster_run_id)
        try:
            job_id = services.backend.submit(spec)
        except Exception as exc:
            fail_run(services, claimed.run_id, f"submission failed: {exc}")
            raise RunFailed(claimed.run_id, RunStatus.FAILED,
                            f"submission failed: {exc}") from exc
        record_submission(services, {claimed.run_id: job_id})
        reached("after-submit")
    final = _wait(services, claimed.run_id, job_id, claimed.layout)
    return finish_run(services, claimed.run_id, claimed.layout, final, claimed.reattached,
                      is_final=claimed.is_final,
                      processing_location_id=claimed.processing_location_id)


def _wait_until_ended(services: ExecutionServices, run_id: int) -> None:
    """Poll a row with the usual backoff until it is terminal (its run finished, or
    reconciliation ended it because its Dagster run died)."""
    delay = services.poll.min_s
    while True:
        with services.sessions.begin() as session:
            if RunStatus(session.get(ExecutedReductionStep, run_id).status).is_terminal:
                return
        services.sleep(delay)
        delay = min(services.poll.max_s, delay * services.poll.factor)


def _completed_with(session: Session, inputs: RunInputs,
                    newest: NewestCompleted | None) -> int | None:
    """The newest COMPLETED run of the pair, if it is current for these inputs and its
    products are all still on disk.

    Current is gap evaluation's judgement (``fingerprint.is_current``), not equality of the
    stored fingerprint: a run from before a switch of version policy whose version the new
    policy accepts is up to date for the sensor, so it is reported again here too. Only the
    newest counts: it is what downstream steps consume and what gap evaluation compares.
    Inputs that went back to those of an older run are reduced anew; re-reporting the older
    run would leave the pair a gap for ever. A run whose intermediates the janitor freed is
    not reused either: materializing the pair again is how a person recomputes them.
    """
    if newest is None:
        return None
    run_id, stored, used = newest.run_id, newest.fingerprint, newest.version
    if stored != inputs.fingerprint and not is_current(
            stored, used, policy=inputs.step.version_policy, version=inputs.version.version,
            fingerprint_with=inputs.fingerprint_with):
        return None
    run = session.get(ExecutedReductionStep, run_id)
    return None if freed_products(session, [p.id for p in run.products]) else run_id


def _claim(
    session: Session, inputs: RunInputs, rows: PairRows, services: ExecutionServices,
    dagster_run_id: str | None, trigger_reason: str | None, run_ids: list[str],
) -> tuple[ExecutedReductionStep, bool] | Busy:
    """Adopt the started in-flight run of the same fingerprint (unless an unrelated Dagster
    run owns it: Busy), else claim this run's placeholder or create a new PENDING row.

    A retry re-attaches to the job its first attempt started even when the pair's inputs
    changed since (new data arrived): that job computes the inputs it started with, its
    outcome says so, and the gap sensor runs the pair again for the new ones. Claimed anew,
    the first job would run unwatched and its row end FAILED."""
    in_flight = rows.in_flight_to_adopt(inputs.fingerprint, run_ids)
    if in_flight is not None:
        owner = in_flight.dagster_run_id
        if owner and run_ids and owner not in run_ids:
            return Busy(in_flight.id, owner)
        drop_rows(session, rows.placeholders)
        if in_flight.hpc_job_id is None:
            found = services.backend.find(job_name(
                inputs.pipeline.name, inputs.step.name, in_flight.id, in_flight.run_dir or ""))
            if found is not None:
                in_flight.hpc_job_id = found
                transition(in_flight, RunStatus.STAGING_DATA)
                transition(in_flight, RunStatus.SUBMITTED)
        in_flight.dagster_run_id = dagster_run_id or in_flight.dagster_run_id
        return in_flight, True
    run = take_one(session, rows.placeholders, run_ids)
    if run is None:
        run = ExecutedReductionStep(reduction_step_id=inputs.step.id,
                                    sub_group_key=inputs.subgroup.key, status=RunStatus.PENDING,
                                    trigger_reason=trigger_reason)
        session.add(run)
    # A placeholder carries what was planned at queue time; the inputs are planned anew now.
    run.reduction_software_version_id = inputs.version.id
    run.reduction_step_config_id = inputs.config.id
    run.sub_group_values = inputs.subgroup.dimensions
    run.input_fingerprint = inputs.fingerprint
    run.dagster_run_id = dagster_run_id or run.dagster_run_id
    run.hpc_backend = services.backend.name
    run.container_runtime = services.runtime.name
    run.retry_count = rows.failures
    session.flush()
    run.run_dir = str(layout_for(services.base_dir, inputs, run.id).root)
    session.execute(sa.insert(run_input_raw_data_package), [
        {"executed_reduction_step_id": run.id, "raw_data_package_id": pid}
        for pid in inputs.subgroup.raw_data_package_ids
    ])
    if inputs.upstream:
        session.execute(sa.insert(run_input_data_product), [
            {"executed_reduction_step_id": run.id, "data_product_id": u.id}
            for u in inputs.upstream
        ])
    return run, False


def fail_run(services: ExecutionServices, run_id: int, reason: str,
          status: RunStatus = RunStatus.FAILED) -> None:
    with services.sessions.begin() as session:
        run = session.get(ExecutedReductionStep, run_id, with_for_update=True)
        if not RunStatus(run.status).is_terminal:
            transition(run, status, reason=reason)


def stage_run(
    services: ExecutionServices, run_id: int, layout: RunLayout, dagster_run_id: str | None
) -> JobSpec:
    """Stage the inputs, write the manifest and build the job (STAGING_DATA); on any error
    the run is FAILED with the reason and :class:`RunFailed` raised."""
    result = stage_runs(services, {run_id: layout}, dagster_run_id)[run_id]
    if isinstance(result, RunFailed):
        raise result
    return result


def stage_runs(
    services: ExecutionServices, layouts: Mapping[int, RunLayout], dagster_run_id: str | None
) -> dict[int, JobSpec | RunFailed]:
    """:func:`stage_run` for many claimed runs of one step: run id -> its job, or the
    :class:`RunFailed` of a run whose staging failed (that run is FAILED, not its siblings).

    Why together: the members of a batch share their step, so the step is planned once
    (:func:`plan_inputs_many`), their raw packages are read in one query, one stager (one
    connection to the processing location) serves them all, and one flush and one commit
    record them all STAGING_DATA with their staged copies.

    A member whose staging raises (a missing or corrupt file, an unsafe path) fails alone;
    what it wrote before is kept, and true: its run row says STAGING_DATA until it is marked
    FAILED, and a copy is recorded only for a file staged and verified. No savepoint per
    member: flushing each member at its savepoint was a quarter of staging's CPU
    (docs/batching.md). Only a database error at the commit (a copy another run recorded at the
    same moment) now fails the whole batch's staging, which its runs' retries stage again.
    """
    specs: dict[int, JobSpec | RunFailed] = {}
    errors: dict[int, Exception] = {}
    log = CoalescedLog(services.log)  # two lines per member, one event every few seconds
    staging = replace(services, log=log)
    try:
        with services.sessions.begin() as session:
            runs = {r.id: r for r in session.scalars(
                sa.select(ExecutedReductionStep)
                .where(ExecutedReductionStep.id.in_(list(layouts))))}
            for step, step_runs in _by_step(runs.values()).items():
                planned = plan_inputs_many(session, step.pipeline.name, step.name,
                                           [r.sub_group_key for r in step_runs],
                                           services.base_dir)
                found = [i for i in planned.values() if isinstance(i, RunInputs)]
                packages = _packages(session, [pid for i in found
                                               for pid in i.subgroup.raw_data_package_ids])
                location = session.get(DataLocation, step.pipeline.processing_location_id)
                stager = services.stager_factory(session, location)
                stager.prefetch(list(packages.values()))
                with session.no_autoflush:  # one flush for the batch, at the commit
                    for run in step_runs:
                        try:
                            inputs = planned[run.sub_group_key]
                            if isinstance(inputs, Exception):
                                raise inputs
                            specs[run.id] = _stage_member(
                                staging, run, inputs, layouts[run.id], packages, stager,
                                dagster_run_id)
                        except Exception as exc:  # this member only
                            errors[run.id] = exc
    except Exception as exc:  # the shared part failed: no member was staged
        specs.clear()
        errors = {run_id: errors.get(run_id, exc) for run_id in layouts}
    finally:
        log.flush()
    for run_id, exc in errors.items():
        fail_run(services, run_id, f"staging failed: {exc}")
        failed = RunFailed(run_id, RunStatus.FAILED, f"staging failed: {exc}")
        failed.__cause__ = exc
        specs[run_id] = failed
    return specs


def _by_step(runs: Iterable[ExecutedReductionStep]
             ) -> dict[ReductionStep, list[ExecutedReductionStep]]:
    grouped: dict[ReductionStep, list[ExecutedReductionStep]] = {}
    for run in sorted(runs, key=lambda r: r.id):
        grouped.setdefault(run.step, []).append(run)
    return grouped


def _packages(session: Session, ids: list[int]) -> dict[int, RawDataPackage]:
    """The raw packages with what staging and the manifest read of them, in few queries."""
    if not ids:
        return {}
    obs_unit = selectinload(RawDataPackage.executed_obs_unit).selectinload(
        ExecutedObsUnit.obs_unit)
    return {p.id: p for p in session.scalars(
        sa.select(RawDataPackage).where(RawDataPackage.id.in_(sorted(set(ids))))
        .options(selectinload(RawDataPackage.files),
                 selectinload(RawDataPackage.instrument_module),
                 obs_unit.selectinload(ObsUnit.source),
                 obs_unit.selectinload(ObsUnit.observing_program)))}


def _stage_member(services: ExecutionServices, run: ExecutedReductionStep, inputs: RunInputs,
                  layout: RunLayout, packages_by_id: Mapping[int, RawDataPackage],
                  stager: Any, dagster_run_id: str | None) -> JobSpec:
    run_id = run.id
    transition(run, RunStatus.STAGING_DATA)
    layout.create()
    packages = [packages_by_id[pid] for pid in sorted(inputs.subgroup.raw_data_package_ids)]
    progress = StagingProgress(services.log, f"run {run_id}", packages)
    transfers_before = getattr(stager, "transfers", None)  # one stager serves the whole batch
    staged = stager.stage_packages(packages, layout.raw_input_dir,
                                   progress=progress.package_done)
    transfers_after = getattr(stager, "transfers", None)
    progress.finished(None if transfers_after is None
                      else transfers_after - (transfers_before or 0))
    product_paths = _link_products(inputs, layout)
    upstream_steps = build_view(
        layout, [up.name for up in inputs.step.depends_on], inputs.upstream, inputs.subgroup.key)
    paths = PathMap(layout, services.runtime.in_container)
    manifest = build_manifest(
        inputs=inputs, run_id=run_id, dagster_run_id=dagster_run_id,
        packages=packages, staged=staged,
        product_paths={pid: paths(p) for pid, p in product_paths.items()}, paths=paths)
    write_manifest(layout.manifest_path, manifest)
    resources = dict(inputs.config.resource_requirements or {})
    env = {**(inputs.config.environment_variables or {}), **contract_env(
        paths=paths, is_final=inputs.is_final, step=inputs.step.name,
        sub_group_key=inputs.subgroup.key, run_id=run_id,
        cpu=int(resources.get("cpu", 1)))}
    argv, process_env = services.runtime.command(
        argv=list(inputs.config.command_template), env=env, binds=layout.binds(upstream_steps),
        image=inputs.version.image_ref, gpu=int(resources.get("gpu", 0)),
        workdir=layout.workspace_dir)
    run.execution_command = argv
    return JobSpec(
        name=job_name(inputs.pipeline.name, inputs.step.name, run_id, layout.root),
        argv=argv,
        env=process_env, workdir=layout.workspace_dir,
        stdout_path=output_paths(layout).stdout,
        stderr_path=output_paths(layout).stderr, resources=resources,
        image=inputs.version.image_ref)


def record_submission(services: ExecutionServices, job_ids: dict[int, str]) -> None:
    """Record the job id of each submitted run (SUBMITTED), all in one transaction, so a
    crash leaves either every member of a batch with its job id or none."""
    with services.sessions.begin() as session:
        runs = _rows(session, job_ids)
        for run_id, job_id in job_ids.items():
            run = runs[run_id]
            run.hpc_job_id = job_id
            transition(run, RunStatus.SUBMITTED)
    services.log("\n".join(f"run {run_id}: submitted {services.backend.name} job {job_id}"
                           for run_id, job_id in job_ids.items()))


def _rows(session: Session, run_ids: Iterable[int], *options: Any, lock: bool = False
          ) -> dict[int, ExecutedReductionStep]:
    """Many run rows in one query (a batch's members), by id; ``lock``: FOR UPDATE, in id
    order."""
    query = (sa.select(ExecutedReductionStep)
             .where(ExecutedReductionStep.id.in_(sorted(set(run_ids))))
             .order_by(ExecutedReductionStep.id).options(*options))
    return {r.id: r for r in session.scalars(query.with_for_update() if lock else query)}


def _link_products(inputs: RunInputs, layout: RunLayout) -> dict[int, Path]:
    """Hard-link upstream products into ``input/products/<step>/<sub_group>/<path>`` (the
    manifest's paths; ``build_view`` then presents them where seed programs look)."""
    linked: dict[int, Path] = {}
    for product in inputs.upstream:
        if not product.path.is_file():
            raise FileNotFoundError(
                f"upstream product {product.id} ({product.step}/{product.sub_group_key}/"
                f"{product.relative_path}) is missing on disk"
            )
        target = join_inside(layout.products_input_dir,
                             f"{product.step}/{product.sub_group_key}/{product.relative_path}")
        link_or_copy(product.path, target)
        linked[product.id] = target
    return linked


#: Errors of a status poll that retrying cannot cure (a bad job id, a bug): raised at once.
_NOT_TRANSIENT = (ValueError, TypeError, KeyError, AttributeError, NotImplementedError)


def output_paths(layout: RunLayout) -> JobOutput:
    """Where a run's program writes its stdout and stderr (the job spec says the same)."""
    return JobOutput(layout.logs_dir / "stdout.log", layout.logs_dir / "stderr.log")


def _wait(services: ExecutionServices, run_id: int, job_id: str,
          layout: RunLayout | None = None) -> JobStatus:
    outputs = {job_id: output_paths(layout)} if layout is not None else None
    return next(wait_jobs(services, {job_id: run_id}, outputs))[0]


def wait_jobs(services: ExecutionServices, jobs: Mapping[str, int],
              outputs: Mapping[str, JobOutput] | None = None,
              labels: Mapping[str, str] | None = None) -> Iterator[list[JobStatus]]:
    """Poll the jobs (job id -> run id) together, one status call per poll, and yield the
    final statuses of the jobs each poll found finished, together (a batch finishes them
    together); a run is marked RUNNING when its job is first seen running. Backoff restarts
    when a job finishes, so the next ones are seen promptly.

    Every poll goes through a :class:`~ccat_assets.execution.job_watch.JobWatch`: state changes and
    the new lines of each job's ``outputs`` reach the run's log while the jobs run, under
    the job's label (``run <id>`` unless ``labels`` says otherwise)."""
    waiting = dict(jobs)
    delay = services.poll.min_s
    seen_running: set[str] = set()
    failing_for = 0.0
    shown = {job_id: (labels or {}).get(job_id, f"run {run_id}")
             for job_id, run_id in jobs.items()}
    watch = JobWatch(services.log, shown, outputs, services.tail)
    while waiting:
        try:
            statuses = services.backend.status(list(waiting))
        except _NOT_TRANSIENT:
            raise
        except Exception as exc:  # a lost connection must not abandon a running job
            if failing_for >= services.poll.error_grace_s:
                raise
            services.log(f"polling {_shown(waiting)} failed ({exc}); retrying")
            services.sleep(delay)
            failing_for += delay
            delay = min(services.poll.max_s, delay * services.poll.factor)
            continue
        failing_for = 0.0
        try:
            watch.observe({job_id: statuses[job_id] for job_id in waiting})
        except Exception as exc:  # the log is a view: it never stops the wait for a job
            services.log(f"could not show the state or output of {_shown(waiting)}: {exc}")
        started = {job_id: run_id for job_id, run_id in waiting.items()
                   if statuses[job_id].state == "running" and job_id not in seen_running}
        if started:
            seen_running.update(started)
            _mark_running(services, started)
        ended = [job_id for job_id in waiting
                 if statuses[job_id].finished or statuses[job_id].state == "unknown"]
        for job_id in ended:
            del waiting[job_id]
        if ended:
            yield [statuses[job_id] for job_id in ended]
        if not waiting:
            return
        if ended:
            delay = services.poll.min_s
        services.sleep(delay)
        delay = min(services.poll.max_s, delay * services.poll.factor)


def _mark_running(services: ExecutionServices, started: Mapping[str, int]) -> None:
    """RUNNING in the ops-db for the runs whose jobs were first seen running in one poll: one
    transaction for all of them (a batch's members start together). The log line, with the
    node, is the watch's."""
    with services.sessions.begin() as session:
        runs = _rows(session, started.values())
        for run_id in started.values():
            if RunStatus(runs[run_id].status) == RunStatus.SUBMITTED:
                transition(runs[run_id], RunStatus.RUNNING)
    reached("job-running")


def _shown(jobs: Mapping[str, int]) -> str:
    ids = list(jobs)
    if len(ids) == 1:
        return f"job {ids[0]}"
    return "jobs " + ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")


@dataclass(frozen=True)
class JobEnded:
    """A claimed run whose job has ended: what :func:`finish_runs` finishes."""

    run_id: int
    layout: RunLayout
    job: JobStatus
    reattached: bool


def finish_run(
    services: ExecutionServices, run_id: int, layout: RunLayout, job: JobStatus, reattached: bool,
    *, is_final: bool | None = None, processing_location_id: int | None = None,
    announce: bool = True,
) -> RunOutcome:
    """Record the job's end and collect its outputs (COMPLETED), or keep its logs and fail
    it (:class:`RunFailed`): :func:`finish_runs` for one run."""
    result = finish_runs(services, [JobEnded(run_id, layout, job, reattached)],
                         is_final=is_final, processing_location_id=processing_location_id,
                         announce=announce)[run_id]
    if isinstance(result, RunFailed):
        raise result
    return result


def finish_runs(
    services: ExecutionServices, ended: Sequence[JobEnded], *, is_final: bool | None = None,
    processing_location_id: int | None = None, announce: bool = True,
) -> dict[int, RunOutcome | RunFailed]:
    """Record each job's end and collect its outputs (COMPLETED), or keep its logs and fail
    the run: run id -> its outcome, or the :class:`RunFailed` that says why it failed.

    Why together: the members of a batch that one poll found ended are finished in two
    transactions (one records their jobs' accounting, one records their products), not two
    each, and what their outcomes report is read once for all of them. Their files are
    read and hashed between the two, outside any transaction, so an output that cannot be
    collected fails its member only, before anything of it is written.
    ``is_final`` and ``processing_location_id`` are the step's, if the caller knows them (a
    batch does, for all its members); else they are looked up. ``announce=False`` leaves
    the "COMPLETED with" lines to the caller."""
    if not ended:
        return {}
    steps = _record_job_ends(services, ended, is_final, processing_location_id)
    results: dict[int, RunOutcome | RunFailed] = {
        e.run_id: _job_failed(services, e, *steps[e.run_id])
        for e in ended if e.job.state != "completed"}
    not_collected: dict[int, Exception] = {}
    discovered: dict[int, DiscoveredProducts] = {}
    for e in ended:  # the files are read and hashed before the transaction
        if e.job.state == "completed":
            try:
                discovered[e.run_id] = discover_products(e.layout, steps[e.run_id][0])
            except (CollectionError, OSError) as exc:  # OSError: unreadable while hashed
                not_collected[e.run_id] = exc
    if discovered:
        with services.sessions.begin() as session:
            runs = _rows(session, discovered,
                         selectinload(ExecutedReductionStep.software_version)
                         .selectinload(ReductionSoftwareVersion.software))
            inputs = consumed_by_runs(session, list(discovered))
            collected: dict[int, CollectResult] = {}
            for location, members in _by_location(discovered, steps).items():
                collected |= record_products_of_runs(
                    session, [(runs[run_id], discovered[run_id]) for run_id in members],
                    processing_location_id=location)
            for e in ended:
                if e.run_id in discovered:
                    run = runs[e.run_id]
                    if RunStatus(run.status) != RunStatus.COMPLETED:
                        transition(run, RunStatus.COMPLETED)
                    results[e.run_id] = _outcome(run, collected[run.id].products,
                                                 collected[run.id].warnings, e.reattached,
                                                 inputs[run.id])
            reached("in-collection")
    for e in ended:
        if e.run_id in not_collected:
            results[e.run_id] = _collection_failed(services, e, not_collected[e.run_id],
                                                   *steps[e.run_id])
        elif announce and isinstance(outcome := results[e.run_id], RunOutcome):
            services.log(collected_line(e.run_id, outcome.products))
    return results


def _by_location(run_ids: Iterable[int], steps: Mapping[int, tuple[bool, int]]
                 ) -> dict[int, list[int]]:
    """Run ids by the processing location their products are recorded at."""
    grouped: dict[int, list[int]] = {}
    for run_id in run_ids:
        grouped.setdefault(steps[run_id][1], []).append(run_id)
    return grouped


def _record_job_ends(services: ExecutionServices, ended: Sequence[JobEnded],
                     is_final: bool | None, processing_location_id: int | None
                     ) -> dict[int, tuple[bool, int]]:
    """The jobs' exit code and accounting on their runs, and COLLECTING_RESULTS on those
    that succeeded, in one transaction (rows locked in id order, as every writer does).
    Returns each run's (is final step, processing location id): the caller's, or its
    step's."""
    facts: dict[int, tuple[bool, int]] = {}
    with services.sessions.begin() as session:
        runs = _rows(session, [e.run_id for e in ended], lock=True)
        for e in ended:
            run = runs[e.run_id]
            run.exit_code = e.job.exit_code
            run.processing_time_s = e.job.wall_time_s
            run.cpu_hours = e.job.cpu_hours
            run.peak_memory_gb = e.job.peak_memory_gb
            if e.job.state == "completed" and RunStatus(run.status) != RunStatus.COMPLETED:
                transition(run, RunStatus.COLLECTING_RESULTS)
            facts[e.run_id] = (
                is_final_step(session, run.step) if is_final is None else is_final,
                run.step.pipeline.processing_location_id if processing_location_id is None
                else processing_location_id)
    return facts


def _collection_failed(services: ExecutionServices, ended: JobEnded, exc: Exception,
                       is_final: bool, processing_location_id: int) -> RunFailed:
    """Keep the logs of a run whose outputs could not be collected and fail it."""
    reason = f"collection failed: {exc}"
    _collect_logs(services, ended.run_id, ended.layout, is_final, processing_location_id)
    fail_run(services, ended.run_id, reason)
    failed = RunFailed(ended.run_id, RunStatus.FAILED, reason, exit_code=ended.job.exit_code,
                       job_id=ended.job.job_id)
    failed.__cause__ = exc
    return failed


def _job_failed(services: ExecutionServices, ended: JobEnded, is_final: bool,
                processing_location_id: int) -> RunFailed:
    """Keep the logs of a run whose job did not succeed, fail the run, and say why, with
    the program's last lines."""
    job = ended.job
    reason = job.reason or f"job ended {job.state}"
    if job.state == "cancelled":  # our own cancellations settle the row before this
        reason = (f"{services.backend.name} job {job.job_id} was cancelled outside the "
                  f"run ({reason})")
    _collect_logs(services, ended.run_id, ended.layout, is_final, processing_location_id)
    status = RunStatus.CANCELLED if job.state == "cancelled" else RunStatus.FAILED
    fail_run(services, ended.run_id, reason, status)
    stream, tail = failure_tail(output_paths(ended.layout), services.backend, job.job_id,
                                services.failure_lines)
    return RunFailed(ended.run_id, status, reason, exit_code=job.exit_code, log_tail=tail,
                     log_stream=stream, job_id=job.job_id)


def _collect_logs(services: ExecutionServices, run_id: int, layout: RunLayout,
                  is_final: bool | None = None,
                  processing_location_id: int | None = None) -> None:
    """Keep a failed run's logs as LOG products for diagnosis; never its partial outputs.

    The step's kind says where its ``$WORKFLOW_OUTPUT_DIR/logs`` is, so logs a program keeps
    next to its products are kept too."""
    with services.sessions.begin() as session:
        run = session.get(ExecutedReductionStep, run_id)
        collect_run(session, run, layout,
                    is_final=is_final_step(session, run.step) if is_final is None else is_final,
                    logs_only=True,
                    processing_location_id=(run.step.pipeline.processing_location_id
                                            if processing_location_id is None
                                            else processing_location_id))


def reused_outcome(services: ExecutionServices, run_id: int) -> RunOutcome:
    """The outcome of an earlier COMPLETED run, to be reported again (nothing is run)."""
    with services.sessions.begin() as session:
        run = session.get(ExecutedReductionStep, run_id)
        return replace(_outcome(run, list(run.products), [], False,
                                consumed(session, run_id)), reused=True)


def _outcome(run: ExecutedReductionStep, products: list, warnings: list[str],
             reattached: bool, inputs: Consumed) -> RunOutcome:
    version = run.software_version
    return RunOutcome(
        run_id=run.id, status=RunStatus(run.status), fingerprint=run.input_fingerprint,
        sub_group_key=run.sub_group_key, dimensions=dict(run.sub_group_values or {}),
        n_raw_packages=inputs.raw_total, raw_packages=inputs.raw_packages,
        upstream=inputs.upstream, n_upstream=inputs.upstream_total,
        software={"name": version.software.name, "version": version.version,
                  "image": version.image_ref, "digest": version.digest},
        run_dir=run.run_dir or "", job_id=run.hpc_job_id, reattached=reattached,
        runtime=run.container_runtime or "", backend=run.hpc_backend or "",
        products=[{"id": p.id, "path": p.relative_path, "type": p.data_product_type.value,
                   "size_bytes": p.size_bytes, "checksum": p.checksum} for p in products],
        metrics={"processing_time_s": run.processing_time_s, "cpu_hours": run.cpu_hours,
                 "peak_memory_gb": run.peak_memory_gb, "exit_code": run.exit_code},
        warnings=warnings, dagster_run_id=run.dagster_run_id,
    )
