"""Reduce what a pipeline is missing, in process, through the persistent Dagster instance.

Used by the demo until the standing pipeline's own sensor drives it: for each step in order,
every sub-group without a completed run for its current inputs is materialized.
"""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa

from ccat_assets.catalog import load_catalog
from ccat_assets.cli.partitions import sync_partitions
from ccat_assets.definitions import load_definitions
from ccat_assets.grouping import resolve_subgroups
from ccat_assets.inputs import plan_inputs
from ccat_assets.opsdb import DataGrouping, ExecutedReductionStep, RunStatus
from ccat_assets.opsdb.session import session_scope
from ccat_assets.settings import get_settings


def _pending_keys(pipeline: str, step_name: str, group_by: list[str]) -> list[str]:
    base = get_settings().pipelines_dir
    with session_scope() as session:
        grouping = session.scalar(
            sa.select(DataGrouping).filter_by(name=_grouping(pipeline)))
        keys = [sg.key for sg in resolve_subgroups(
            session, filter_rules=grouping.filter_rules, group_by=group_by,
            instrument_module_id=grouping.instrument_module_id)]
        pending = []
        for key in keys:
            inputs = plan_inputs(session, pipeline, step_name, key, base)
            done = session.scalar(sa.select(ExecutedReductionStep.id).where(
                ExecutedReductionStep.reduction_step_id == inputs.step.id,
                ExecutedReductionStep.sub_group_key == key,
                ExecutedReductionStep.input_fingerprint == inputs.fingerprint,
                ExecutedReductionStep.status == RunStatus.COMPLETED))
            if done is None:
                pending.append(key)
        return pending


def _grouping(pipeline: str) -> str:
    with session_scope() as session:
        return next(p.grouping for p in load_catalog(session) if p.name == pipeline)


def reduce_all(pipeline: str) -> int:
    failures = 0
    with dg.DagsterInstance.get() as instance:
        sync_partitions(instance, [pipeline])
        defs = load_definitions()
        job = defs.resolve_implicit_global_asset_job_def()
        with session_scope() as session:
            steps = next(p for p in load_catalog(session) if p.name == pipeline).steps
        for step in steps:
            keys = _pending_keys(pipeline, step.name, list(step.group_by))
            print(f"    {step.name}: {len(keys)} sub-group(s) to reduce", flush=True)
            for key in keys:
                result = job.execute_in_process(
                    partition_key=key if step.partitioned else None, instance=instance,
                    asset_selection=[dg.AssetKey(["ccat", pipeline, step.name])],
                    raise_on_error=False, tags={"ccat/reason": "demo"},
                    run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
                print(f"      {key}: {'ok' if result.success else 'FAILED'}", flush=True)
                failures += not result.success
    return failures
