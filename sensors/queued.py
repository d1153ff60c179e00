"""Runs Dagster has accepted but that may not have written their ExecutedReductionStep yet.

A run requested on the last tick can still sit in the queue: the ops-db knows nothing of it,
so gap evaluation counts these (step, sub-group) pairs as in flight too. Manual
materializations and backfill runs are found by their asset selection and partition, batch
runs by the sub-groups in their run config.
"""

from __future__ import annotations

import dagster as dg

from ccat_assets.dagster_face.batch_job import SUB_GROUPS
from ccat_assets.dagster_face.catalog import PipelineDef
from ccat_assets.dagster_face.factory import grain_job_name
from ccat_assets.grouping import ALL_KEY

ACTIVE_STATUSES = [
    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING,
]
PARTITION_TAG = "dagster/partition"


def active_pairs(instance: dg.DagsterInstance, pipeline: PipelineDef) -> set[tuple[str, str]]:
    """(step, sub-group key) of every queued or running Dagster run of ``pipeline``."""
    pairs: set[tuple[str, str]] = set()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE_STATUSES)):
        pairs |= pairs_of_run(run, pipeline)
    return pairs


def pipeline_of_run(run: dg.DagsterRun) -> str | None:
    """The pipeline a run belongs to: its tag, else its assets' keys (``ccat/<pipeline>/...``)."""
    if run.tags.get("ccat/pipeline"):
        return run.tags["ccat/pipeline"]
    for key in run.asset_selection or ():
        if len(key.path) == 3 and key.path[0] == "ccat" and key.path[1] != "grouping":
            return key.path[1]
    return None


def pairs_of_run(run: dg.DagsterRun, pipeline: PipelineDef) -> set[tuple[str, str]]:
    """(step, sub-group key) pairs ``run`` executes of ``pipeline`` (none if not of it)."""
    partition = run.tags.get(PARTITION_TAG)
    if run.tags.get("ccat/batch") == "true":
        if run.tags.get("ccat/pipeline") != pipeline.name:
            return set()
        return {(run.tags.get("ccat/step", ""), key) for key in batch_keys(run)}
    steps = {("ccat", pipeline.name, s.name): s for s in pipeline.steps}
    if run.asset_selection is not None:
        selected = [steps[key] for key in (tuple(k.path) for k in run.asset_selection)
                    if key in steps]
    elif run.tags.get("ccat/pipeline") == pipeline.name:
        # a whole per-grain job (a backfill): the steps of that job's grain
        selected = [s for s in pipeline.steps if grain_job_name(pipeline, s) == run.job_name]
    else:
        return set()
    pairs: set[tuple[str, str]] = set()
    for step in selected:
        # A run is either of one partition (partitioned steps) or of none ("all").
        if step.partitioned and partition:
            pairs.add((step.name, partition))
        elif not step.partitioned and not partition:
            pairs.add((step.name, ALL_KEY))
    return pairs


def batch_keys(run: dg.DagsterRun) -> list[str]:
    """The sub-groups of a batch run, from its run config."""
    ops = (run.run_config or {}).get("ops", {})
    return [key for op in ops.values() for key in op.get("config", {}).get(SUB_GROUPS, [])]
