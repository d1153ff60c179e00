"""The batch job of a step: one Dagster run executing many of its sub-groups.

Why a job of one op, not the asset itself: Dagster can run many partitions in one run only
as a contiguous range (``BackfillPolicy.single_run``), and a single-run backfill of an
arbitrary subset of dynamic partitions is not possible (dagster#15667); gaps are arbitrary
subsets. So the op reports what an asset run would: a *planned* event per member partition
when the members are claimed (the UI shows them in progress), an ``AssetMaterialization``
per completed member with the same metadata, data version and provenance tags (code
version, inputs) as a single run, so Dagster judges its staleness alike, the member's
asset-check evaluations, and an asset-failed event per failed member. The run fails when a
member failed, and Dagster then marks exactly the planned-but-unmaterialized partitions
failed, never their siblings. A retry of the run reruns only the members without a
completed run (:func:`ccat_assets.execution.batch.iter_batch`). A member of an automation-launched
batch whose upstream became incomplete after launch (new data arrived) is deferred: no
planned event, no failure, a warning in the run's log; the gap sensor launches it again.

(No ``from __future__ import annotations`` here: Dagster reads the context annotation.)
"""


from collections.abc import Iterator

import dagster as dg

from ccat_assets.dagster_face.batch_events import (
    failed_event,
    input_provenance,
    planned_events,
    provenance_tags,
)
from ccat_assets.dagster_face.catalog import PipelineDef, StepDef
from ccat_assets.dagster_face.checks import check_names, judge_runs
from ccat_assets.dagster_face.factory import parent_keys, step_key
from ccat_assets.dagster_face.materialization import materialize_result
from ccat_assets.dagster_face.run_failure import batch_failure, member_failure_text
from ccat_assets.dagster_face.run_start import (
    launched_by_automation,
    require_partitions,
    retry_chain,
    trigger_reason,
)
from ccat_assets.execution.batch import BatchStarted, MemberResult, iter_batch
from resources.execution import ExecutionResource
from resources.opsdb import OpsDBResource

SUB_GROUPS = "sub_groups"


def batch_job_name(pipeline: str, step: str) -> str:
    return f"{pipeline}__{step}__batch"


def batch_op_name(pipeline: str, step: str) -> str:
    """The job's one op; Dagster wants op and job names distinct within a repository."""
    return f"{pipeline}__{step}__members"


class BatchConfig(dg.Config):
    """The sub-groups one batch run executes (the gap sensor fills this in)."""

    sub_groups: list[str]


def batched_steps(pipeline: PipelineDef) -> list[StepDef]:
    """Steps that run in batches: partitioned, with ``batch_size`` above 1."""
    return [s for s in pipeline.steps if s.partitioned and s.batch_size > 1]


def build_batch_job(pipeline: PipelineDef, step: StepDef) -> dg.JobDefinition:
    asset_key = step_key(pipeline.name, step.name)
    name = batch_job_name(pipeline.name, step.name)

    @dg.op(
        name=batch_op_name(pipeline.name, step.name), out={},
        pool=step.pool if step.max_concurrent_runs else None,
        tags={"ccat/pipeline": pipeline.name, "ccat/step": step.name},
        description=(f"Runs up to {step.batch_size} sub-groups of {pipeline.name}/{step.name}"
                     " as one array job; reports each as a materialization of its partition."),
    )
    def _batch(context: dg.OpExecutionContext, config: BatchConfig,
               execution: ExecutionResource, opsdb: OpsDBResource):
        services = execution.services(context.log.info)
        with services.sessions.begin() as session:
            require_partitions(context, session, pipeline, step, config.sub_groups)
        failed: list[MemberResult] = []
        inputs = input_provenance(context.instance, parent_keys(pipeline, step))
        code_version = step.code_version or context.run.run_id  # as Dagster does without one
        for event in iter_batch(
                services, pipeline_name=pipeline.name, step_name=step.name,
                sub_group_keys=config.sub_groups, dagster_run_id=context.run.run_id,
                trigger_reason=trigger_reason(context.run),
                max_parallel=step.max_concurrent_runs, own_run_ids=retry_chain(context.run),
                defer_incomplete=launched_by_automation(context.run)):
            if isinstance(event, BatchStarted):
                for planned in planned_events(context, asset_key, event.keys):
                    context.instance.report_dagster_event(planned, run_id=context.run.run_id)
                continue
            failed += [member for member in event if member.failed]
            yield from _report(context, opsdb, asset_key, step, event,
                               code_version=code_version, inputs=inputs)
        if failed:
            raise batch_failure(len(config.sub_groups), failed)

    @dg.job(name=name, tags={"ccat/pipeline": pipeline.name, "ccat/step": step.name,
                             "ccat/batch": "true"},
            description=f"Batches of {pipeline.name}/{step.name}, launched by its gap sensor.")
    def _job():
        _batch()

    return _job


def _materialization(asset_key: dg.AssetKey, result: MemberResult,
                     tags: dict[str, str]) -> dg.AssetMaterialization:
    """The same metadata, data version and provenance a single run of the partition records
    (the tags: :func:`ccat_assets.dagster_face.batch_events.provenance_tags`)."""
    single = materialize_result(result.outcome)
    return dg.AssetMaterialization(
        asset_key=asset_key, partition=result.key, metadata=single.metadata, tags=tags)


def _report(context: dg.OpExecutionContext, opsdb: OpsDBResource, asset_key: dg.AssetKey,
            step: StepDef, members: list[MemberResult], *, code_version: str,
            inputs: dict[str, str]) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """What members that became final together say: a warning for each deferred one, a
    failure event for each failed one, a materialization for each completed one, then the
    step's checks on the completed ones."""
    materialized: list[MemberResult] = []
    for member in members:
        if member.deferred is not None:
            context.log.warning(f"{member.deferred}; deferred, not failed: the gap sensor "
                                "launches it again once its upstream is complete")
        elif member.failed:
            context.instance.report_dagster_event(
                failed_event(context, asset_key, member.key, member_failure_text(member)),
                run_id=context.run.run_id)
            context.log.error(f"{step.name}/{member_failure_text(member)}")
        elif member.outcome is not None:
            materialized.append(member)
            yield _materialization(asset_key, member, provenance_tags(
                code_version=code_version, data_version=member.outcome.fingerprint,
                inputs=inputs))
    yield from _check_evaluations(opsdb, asset_key, step, materialized, context.run.run_id)


def _check_evaluations(opsdb: OpsDBResource, asset_key: dg.AssetKey, step: StepDef,
                       members: list[MemberResult], dagster_run_id: str
                       ) -> Iterator[dg.AssetCheckEvaluation]:
    """The step's asset checks on these members, as the checks op of a single run gives
    them, evaluated in one session; they judge each member's own COMPLETED run (the one the
    checks op would find for it: this run's, or the newest one reported again), so it is
    not looked up again."""
    if not members:
        return
    names = check_names(step)
    with opsdb.sessions().begin() as session:
        judged = judge_runs(session, [m.outcome.run_id for m in members
                                      if m.outcome is not None], set(names))
    for member in members:
        assert member.outcome is not None  # only materialized members are judged
        for name in names:
            yield dg.AssetCheckEvaluation(asset_key=asset_key, check_name=name,
                                          partition=member.key,
                                          **judged[member.outcome.run_id][name])


def build_batch_jobs(pipeline: PipelineDef) -> list[dg.JobDefinition]:
    return [build_batch_job(pipeline, s) for s in batched_steps(pipeline)]
