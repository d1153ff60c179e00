"""Every queued Dagster run of a pipeline gets its PENDING rows in the ops-db.

Whoever queued the run (a gap sensor, a schedule, a person in the UI, GraphQL, a backfill),
this sensor finds it in Dagster's queue within one interval and writes a placeholder row
per (step, sub-group) it will execute (:mod:`ccat_assets.execution.queued_rows`), carrying the
Dagster run id. Runs that already have rows are skipped with one query, so a tick over a long queue
costs one run-storage query and one ops-db query plus the new rows.

Only runs that have not started are looked at: a started run's worker claims its row
itself, before anything is staged or submitted.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import sqlalchemy as sa

from ccat_assets.dagster_face.catalog import PipelineDef
from ccat_assets.dagster_face.run_start import trigger_reason
from ccat_assets.execution.queued_rows import QueuedPair, record_queued
from ccat_assets.opsdb import ExecutedReductionStep
from ccat_assets.opsdb.session import session_scope
from ccat_assets.settings import get_settings
from resources.forkserver_warmup import warm_forkserver
from sensors.instance import sensor_instance
from sensors.queued import pairs_of_run, pipeline_of_run

QUEUED_RUNS_SENSOR = "ccat_queued_runs_sensor"
NOT_STARTED = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]
#: Runs looked at per tick (oldest first); a longer queue is caught up over the next ticks.
RUNS_PER_TICK = 500


def queued_pairs(run: dg.DagsterRun, pipelines: dict[str, PipelineDef]) -> list[QueuedPair]:
    pipeline = pipelines.get(pipeline_of_run(run) or "")
    if pipeline is None:
        return []
    return [QueuedPair(pipeline.name, step, key)
            for step, key in sorted(pairs_of_run(run, pipeline))]


def record_queued_runs(instance: dg.DagsterInstance, catalog: Sequence[PipelineDef],
                       limit: int = RUNS_PER_TICK) -> dict[str, list[int]]:
    """Write the placeholders of every not-yet-started run without rows; returns the row
    ids written per Dagster run."""
    settings = get_settings()
    pipelines = {p.name: p for p in catalog}
    runs = list(reversed(instance.get_runs(filters=dg.RunsFilter(statuses=NOT_STARTED),
                                           limit=limit)))
    wanted = {run.run_id: pairs for run in runs if (pairs := queued_pairs(run, pipelines))}
    if not wanted:
        return {}
    written: dict[str, list[int]] = {}
    with session_scope(settings.database_url) as session:
        have = set(session.scalars(
            sa.select(ExecutedReductionStep.dagster_run_id).distinct()
            .where(ExecutedReductionStep.dagster_run_id.in_(list(wanted)))))
    for run in runs:
        if run.run_id not in wanted or run.run_id in have:
            continue
        with session_scope(settings.database_url) as session:
            ids = record_queued(
                session, wanted[run.run_id], dagster_run_id=run.run_id,
                trigger_reason=trigger_reason(run), base_dir=settings.pipelines_dir,
                backend=settings.hpc_backend, runtime=settings.container_runtime)
        if ids:
            written[run.run_id] = ids
    return written


def build_queued_runs_sensor(catalog: Sequence[PipelineDef],
                             interval_seconds: int) -> dg.SensorDefinition:
    @dg.sensor(
        name=QUEUED_RUNS_SENSOR,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=("Writes a PENDING ExecutedReductionStep for each (step, sub-group) of every "
                     "queued run, whoever queued it, so the ops-db shows queued work and gap "
                     "evaluation counts it in flight; the run's worker claims that row."),
        tags={"ccat/kind": "queued-runs"},
    )
    def _queued_runs(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        instance = sensor_instance(context)
        written = record_queued_runs(instance, catalog)
        if written:  # newly queued runs, whoever queued them, start in the code server soon
            warm_forkserver(instance)
        rows = sum(len(ids) for ids in written.values())
        return dg.SkipReason(f"wrote {rows} PENDING row(s) for {len(written)} queued run(s)"
                             if written else "every queued run has its rows")

    return _queued_runs
