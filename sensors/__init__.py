"""Dagster automation of the pipelines: gap sensors (CONTINUOUS), gap schedules (CRON), the
run-status and reconciliation sensors that keep the ops-db true to Dagster, and pool limits.

MANUAL pipelines launch nothing by themselves: their partitions are materialized or
backfilled by hand. For every pipeline, whoever launches its runs, the partitions sensor
registers new sub-groups as partitions and the queued-runs sensor writes the PENDING rows of
queued runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg

from ccat_assets.batch_job import build_batch_jobs
from ccat_assets.catalog import PipelineDef
from ccat_assets.factory import build_pipeline_jobs
from ccat_assets.gapstate.load import serves_location
from ccat_assets.opsdb import TriggerType
from ccat_assets.settings import Settings
from sensors.gap_sensor import LaunchableJob, build_gap_sensor
from sensors.partitions import build_partitions_sensor
from sensors.queued_rows import build_queued_runs_sensor
from sensors.reconcile import ccat_reconcile_sensor
from sensors.run_status import RUN_STATUS_SENSORS
from sensors.schedules import build_gap_schedules
from sensors.workspace_janitor import build_workspace_janitor_sensor


def build_automation(catalog: list[PipelineDef], settings: Settings,
                     jobs: Mapping[str, Sequence[LaunchableJob]] | None = None,
                     ) -> dg.Definitions:
    """Sensors and schedules for every pipeline of ``catalog``; ``jobs`` are the pipelines'
    per-grain and batch jobs, which the gap sensors target (built here when not given)."""
    if jobs is None:
        jobs = {p.name: [*build_pipeline_jobs(p), *build_batch_jobs(p)] for p in catalog}
    interval = settings.sensor_interval_seconds
    sensors: list[dg.SensorDefinition] = [
        *RUN_STATUS_SENSORS, ccat_reconcile_sensor, build_workspace_janitor_sensor(),
        build_queued_runs_sensor(catalog, interval)]
    schedules: list[dg.ScheduleDefinition] = []
    without_gap_sensor: list[PipelineDef] = []
    for pipeline in catalog:
        served = serves_location(settings.processing_location_id,
                                 pipeline.processing_location_id, pipeline.processing_location)
        if not (pipeline.trigger_type == TriggerType.CONTINUOUS and pipeline.enabled and served):
            without_gap_sensor.append(pipeline)
        if pipeline.trigger_type == TriggerType.CONTINUOUS:
            sensors.append(build_gap_sensor(
                pipeline, served=served, interval_seconds=interval,
                jobs=jobs[pipeline.name]))
        elif pipeline.trigger_type == TriggerType.CRON and pipeline.cron:
            schedules += build_gap_schedules(pipeline, served=served)
    sensors.append(build_partitions_sensor(without_gap_sensor, interval))
    return dg.Definitions(sensors=sensors, schedules=schedules)
