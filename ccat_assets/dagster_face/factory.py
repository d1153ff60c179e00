"""Pipelines -> Dagster definitions: one asset per ReductionStep, partitioned by sub-group.

Asset key ``["ccat", <pipeline>, <step>]``, group = pipeline. Steps of one grain share a
``DynamicPartitionsDefinition`` named ``<pipeline>__<grain>`` and map by identity; between
grains the dependency is an explicit ``AllPartitionMapping`` (the exact sub-group lineage is in
the ops-db). A step with ``group_by: []`` is unpartitioned. Raw data is an external asset per
DataGrouping. Pure: a catalog snapshot in, ``dg.Definitions`` out.
"""


import re

import dagster as dg

from ccat_assets.dagster_face.catalog import PipelineDef, StepDef
from ccat_assets.dagster_face.checks import build_step_checks
from ccat_assets.dagster_face.materialization import materialize_result
from ccat_assets.dagster_face.run_failure import run_failure
from ccat_assets.dagster_face.run_start import (
    forced,
    launched_by_automation,
    require_partitions,
    retry_chain,
    trigger_reason,
)
from ccat_assets.execution.execute import Deferred, RunFailed, execute_partition
from ccat_assets.settings import get_settings
from resources.execution import ExecutionResource

RAW_DATA_GROUP = "raw_data"


def raw_data_key(grouping: str) -> dg.AssetKey:
    return dg.AssetKey(["ccat", "grouping", grouping])


def step_key(pipeline: str, step: str) -> dg.AssetKey:
    return dg.AssetKey(["ccat", pipeline, step])


def partitions_def_for(step: StepDef) -> dg.DynamicPartitionsDefinition | None:
    return dg.DynamicPartitionsDefinition(name=step.partitions_name) if step.partitioned else None


def build_raw_data_asset(grouping: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=raw_data_key(grouping),
        group_name=RAW_DATA_GROUP,
        description=(
            f"RawDataPackages selected by the DataGrouping '{grouping}' (archived by "
            "data-transfer, registered in the ops-db). Observed by the pipelines' sensors."
        ),
        kinds={"ops-db"},
    )


def parent_keys(pipeline: PipelineDef, step: StepDef) -> list[dg.AssetKey]:
    """The assets a step's asset depends on: its upstream steps, else the raw data."""
    return [d.asset_key for d in _deps(pipeline, step)]


def _deps(pipeline: PipelineDef, step: StepDef) -> list[dg.AssetDep]:
    if not step.depends_on:
        return [dg.AssetDep(raw_data_key(pipeline.grouping))]
    deps = []
    for name in step.depends_on:
        upstream = pipeline.step(name)
        same_grain = upstream.partitions_name == step.partitions_name and step.partitioned
        mapping = dg.IdentityPartitionMapping() if same_grain else dg.AllPartitionMapping()
        deps.append(dg.AssetDep(step_key(pipeline.name, name), partition_mapping=mapping))
    return deps


def step_kinds() -> set[str]:
    """What the catalog shows a step runs on: the container runtime and the backend this
    instance is configured with (``host`` and ``local`` on a laptop, not ``apptainer``)."""
    settings = get_settings()
    return {settings.container_runtime, settings.hpc_backend}


def _description(pipeline: PipelineDef, step: StepDef) -> str:
    grain = "all data of the grouping" if not step.partitioned else f"one {step.grain} sub-group"
    text = [
        step.description or f"Runs {step.software} on {grain}.",
        "",
        f"Pipeline `{pipeline.name}` ({pipeline.trigger_type.value}), grouping "
        f"`{pipeline.grouping}`; software `{step.software}`; group_by `{list(step.group_by)}`;"
        f" cooldown {step.cooldown_seconds} s; max retries {step.max_retries}.",
    ]
    if step.is_final:
        text.append("Final step: writes SCIENCE products.")
    return "\n".join(text)


def build_step_asset(pipeline: PipelineDef, step: StepDef) -> dg.AssetsDefinition:
    """The asset of one ReductionStep; its run executes one sub-group end to end."""
    tags = {"ccat/pipeline": pipeline.name, "ccat/step": step.name}

    @dg.asset(
        key=step_key(pipeline.name, step.name),
        group_name=pipeline.name,
        description=_description(pipeline, step),
        partitions_def=partitions_def_for(step),
        deps=_deps(pipeline, step),
        pool=step.pool if step.max_concurrent_runs else None,
        kinds=step_kinds(),
        tags={"ccat/final": str(step.is_final).lower()},
        metadata={"ccat/software": step.software, "ccat/grain": step.grain},
        # What the fingerprint covers of the step itself, so the UI's "unsynced" marks the
        # partitions gap evaluation reprocesses after a config or version change.
        code_version=step.code_version,
        op_tags=tags,
        # A run the gap sensor launched is deferred, not failed, when upstream data arrived
        # after the launch: it then ends without a materialization (see Deferred).
        output_required=False,
    )
    def _step_asset(context: dg.AssetExecutionContext, execution: ExecutionResource):
        key = context.partition_key if step.partitioned else "all"
        services = execution.services(context.log.info)
        with services.sessions.begin() as session:
            require_partitions(context, session, pipeline, step, [key])
        try:
            outcome = execute_partition(
                services, pipeline_name=pipeline.name, step_name=step.name, sub_group_key=key,
                dagster_run_id=context.run.run_id,
                trigger_reason=trigger_reason(context.run),
                force=forced(context.run.tags), own_run_ids=retry_chain(context.run),
                defer_incomplete=launched_by_automation(context.run),
            )
        except RunFailed as exc:
            raise run_failure(f"{step.name}/{key}", exc) from exc
        if isinstance(outcome, Deferred):
            context.log.warning(f"{outcome.reason}; deferred, not run: the gap sensor "
                                "launches it again once the upstream is complete")
            return
        yield materialize_result(outcome)

    return _step_asset


def grain_job_name(pipeline: PipelineDef, step: StepDef) -> str:
    """The per-grain job that runs ``step`` (and every step of its grain)."""
    return f"{pipeline.name}__{re.sub(r'[^A-Za-z0-9_]', '_', step.grain)}"


def build_pipeline_jobs(pipeline: PipelineDef) -> list:
    """One job per grain of a pipeline, for backfills (``dagster job backfill``) and the runs
    the gap sensor launches."""
    jobs = []
    grains: dict[str, list[StepDef]] = {}
    for step in pipeline.steps:
        grains.setdefault(step.partitions_name if step.partitioned else "", []).append(step)
    for steps in grains.values():
        jobs.append(dg.define_asset_job(
            name=grain_job_name(pipeline, steps[0]),
            selection=dg.AssetSelection.assets(*[step_key(pipeline.name, s.name) for s in steps]),
            tags={"ccat/pipeline": pipeline.name, "dagster/priority": str(pipeline.priority)},
            description=f"Steps of {pipeline.name} at grain {steps[0].grain}, for backfills.",
        ))
    return jobs


def build_pipeline_definitions(pipeline: PipelineDef) -> dg.Definitions:
    assets = [build_step_asset(pipeline, step) for step in pipeline.steps]
    checks = [build_step_checks(step_key(pipeline.name, s.name), s, partitions_def_for(s))
              for s in pipeline.steps]
    return dg.Definitions(assets=assets, asset_checks=checks)
