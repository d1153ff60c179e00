"""The two snapshots ``ccat-wm check`` compares, read from the Dagster instance and the ops-db.

A few queries per step: the partitions, the latest materialization of each partition (one
query for their storage ids, one fetch per 1,000), the failed attempts; the pipeline's runs in
the ops-db; the Dagster runs behind rows in flight, followed through retries; the queued runs.
The rules that compare them are in :mod:`ccat_assets.consistency.rules`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ccat_assets.consistency.rules import Finding, PipelineView, Row, StepView, compare
from ccat_assets.dagster_face.catalog import PipelineDef, StepDef, load_catalog
from ccat_assets.dagster_face.factory import step_key
from ccat_assets.grouping import ALL_KEY
from ccat_assets.opsdb import ExecutedReductionStep, Pipeline, ReductionStep, RunStatus
from ccat_assets.opsdb.retired import retired_keys
from ccat_assets.settings import get_settings
from sensors.partitions import subgroup_keys
from sensors.queued_rows import NOT_STARTED, queued_pairs
from sensors.reconcile import dagster_states

FETCH_CHUNK = 1000
#: A queued run's rows are due after this many sensor intervals (and a little slack).
QUEUED_GRACE_INTERVALS = 2


def ops_rows(session: Session, pipeline: str) -> list[Row]:
    query = (sa.select(ExecutedReductionStep.id, ReductionStep.name,
                       ExecutedReductionStep.sub_group_key, ExecutedReductionStep.status,
                       ExecutedReductionStep.input_fingerprint,
                       ExecutedReductionStep.dagster_run_id)
             .join(ReductionStep, ReductionStep.id == ExecutedReductionStep.reduction_step_id)
             .join(Pipeline, Pipeline.id == ReductionStep.pipeline_id)
             .where(Pipeline.name == pipeline).order_by(ExecutedReductionStep.id))
    return [Row(r.id, r.name, r.sub_group_key, RunStatus(r.status), r.input_fingerprint,
                r.dagster_run_id) for r in session.execute(query)]


def latest_versions(instance: dg.DagsterInstance, key: dg.AssetKey,
                    partitioned: bool) -> dict[str, str | None]:
    """Data version of the latest materialization of each partition (``all`` if none)."""
    if not partitioned:
        event = instance.get_latest_materialization_event(key)
        if event is None or event.asset_materialization is None:
            return {}
        return {ALL_KEY: event.asset_materialization.tags.get("dagster/data_version")}
    latest = instance.event_log_storage.get_latest_storage_id_by_partition(
        key, dg.DagsterEventType.ASSET_MATERIALIZATION)
    ids = sorted(latest.values())
    versions: dict[str, str | None] = {}
    for start in range(0, len(ids), FETCH_CHUNK):
        chunk = ids[start:start + FETCH_CHUNK]
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, storage_ids=chunk), limit=len(chunk)).records
        for record in records:
            mat = record.asset_materialization
            if mat is not None and mat.partition is not None:
                versions[mat.partition] = mat.tags.get("dagster/data_version")
    return versions


def failed_attempts(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, str]:
    """Partitions whose latest attempt since their last materialization is a run that ended
    FAILURE or CANCELED: the run id."""
    attempts = instance.event_log_storage \
        .get_latest_asset_partition_materialization_attempts_without_materializations(key)
    run_ids = sorted({run_id for run_id, _ in attempts.values()})
    ended = {r.run_id for r in instance.get_runs(filters=dg.RunsFilter(
        run_ids=run_ids, statuses=[dg.DagsterRunStatus.FAILURE,
                                   dg.DagsterRunStatus.CANCELED]))} if run_ids else set()
    return {partition: run_id for partition, (run_id, _) in attempts.items() if run_id in ended}


def step_view(instance: dg.DagsterInstance, pipeline: PipelineDef, step: StepDef,
              sub_groups: dict[str, set[str]], retired: dict[str, set[str]]) -> StepView:
    key = step_key(pipeline.name, step.name)
    if not step.partitioned:
        return StepView(step.name, None, frozenset({ALL_KEY}),
                        versions=latest_versions(instance, key, partitioned=False))
    return StepView(
        step.name, step.partitions_name, frozenset(sub_groups.get(step.partitions_name, ())),
        partitions=frozenset(instance.get_dynamic_partitions(step.partitions_name)),
        versions=latest_versions(instance, key, partitioned=True),
        failed=failed_attempts(instance, key),
        retired=frozenset(retired.get(step.partitions_name, ())))


def overdue_queued_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """Runs still queued after the queued-runs sensor should have written their rows."""
    grace_s = QUEUED_GRACE_INTERVALS * get_settings().sensor_interval_seconds + 10
    return [record.dagster_run for record in instance.get_run_records(filters=dg.RunsFilter(
        statuses=NOT_STARTED,
        created_before=dt.datetime.fromtimestamp(time.time() - grace_s, dt.UTC)))]


def queued_without_rows(queued: Sequence[dg.DagsterRun], pipeline: PipelineDef,
                        rows: list[Row]) -> dict[str, tuple[tuple[str, str], ...]]:
    """Those of the ``queued`` runs of ``pipeline`` whose pairs lack a row of theirs."""
    have = {(r.dagster_run_id, r.step, r.key) for r in rows}
    out: dict[str, tuple[tuple[str, str], ...]] = {}
    for run in queued:
        missing = tuple((p.step, p.sub_group_key)
                        for p in queued_pairs(run, {pipeline.name: pipeline})
                        if (run.run_id, p.step, p.sub_group_key) not in have)
        if missing:
            out[run.run_id] = missing
    return out


def pipeline_view(instance: dg.DagsterInstance, session: Session, pipeline: PipelineDef,
                  queued: Sequence[dg.DagsterRun]) -> PipelineView:
    rows = ops_rows(session, pipeline.name)
    sub_groups = subgroup_keys(session, [pipeline])
    retired = retired_keys(session, sorted(sub_groups))
    steps = tuple(step_view(instance, pipeline, s, sub_groups, retired) for s in pipeline.steps)
    in_flight = {r.dagster_run_id for r in rows
                 if not r.status.is_terminal and r.dagster_run_id}
    states = {run_id: state.status for run_id, state in
              dagster_states(instance, in_flight).items()}
    return PipelineView(pipeline.name, pipeline.grouping, steps, tuple(rows), states,
                        queued_without_rows(queued, pipeline, rows))


class UnknownPipelines(LookupError):
    """Names asked for that are no pipeline of the ops-db."""


def check_pipelines(instance: dg.DagsterInstance, session: Session,
                    names: Sequence[str] = ()) -> list[Finding]:
    """Every disagreement of the pipelines ``names`` (default all)."""
    catalog = load_catalog(session)
    unknown = sorted(set(names) - {p.name for p in catalog})
    if unknown:
        raise UnknownPipelines(f"no pipeline {', '.join(unknown)} in the ops-db")
    queued = overdue_queued_runs(instance)
    views = [pipeline_view(instance, session, p, queued) for p in catalog
             if not names or p.name in names]
    return [finding for view in views for finding in compare(view)]


