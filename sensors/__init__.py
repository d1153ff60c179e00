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

from ccat_assets.automation.gapstate.load import serves_location
from ccat_assets.dagster_face.batch_job import build_batch_jobs
from ccat_assets.dagster_face.catalog import PipelineDef
from ccat_assets.dagster_face.factory import build_pipeline_jobs
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
    sensors: list[dg.SensorDefinition] = shared_sensors(catalog, settings)
    schedules: list[dg.ScheduleDefinition] = []
    for pipeline in catalog:
        own_sensors, own_schedules = build_pipeline_automation(pipeline, settings,
                                                               jobs[pipeline.name])
        sensors += own_sensors
        schedules += own_schedules
    return dg.Definitions(sensors=sensors, schedules=schedules)


def _served(pipeline: PipelineDef, settings: Settings) -> bool:
    return serves_location(settings.processing_location_id,
                           pipeline.processing_location_id, pipeline.processing_location)


def has_running_gap_sensor(pipeline: PipelineDef, settings: Settings) -> bool:
    return (pipeline.trigger_type == TriggerType.CONTINUOUS and pipeline.enabled
            and _served(pipeline, settings))


def shared_sensors(catalog: Sequence[PipelineDef], settings: Settings,
                   ) -> list[dg.SensorDefinition]:
    """The sensors of the whole instance, not of one pipeline: run status, reconciliation,
    the workspace janitor, queued runs' rows and partitions of the pipelines (``catalog``:
    those that loaded) that no gap sensor follows. They must load whatever state any one
    pipeline is in."""
    interval = settings.sensor_interval_seconds
    return [*RUN_STATUS_SENSORS, ccat_reconcile_sensor, build_workspace_janitor_sensor(),
            build_queued_runs_sensor(catalog, interval),
            build_partitions_sensor(
                [p for p in catalog if not has_running_gap_sensor(p, settings)], interval)]


def build_pipeline_automation(pipeline: PipelineDef, settings: Settings,
                              jobs: Sequence[LaunchableJob],
                              ) -> tuple[list[dg.SensorDefinition], list[dg.ScheduleDefinition]]:
    """One pipeline's own gap sensor or gap schedules, built apart from every other pipeline's
    so that a pipeline Dagster refuses can be left out alone."""
    served = _served(pipeline, settings)
    if pipeline.trigger_type == TriggerType.CONTINUOUS:
        return [build_gap_sensor(pipeline, served=served,
                                 interval_seconds=settings.sensor_interval_seconds,
                                 jobs=jobs)], []
    if pipeline.trigger_type == TriggerType.CRON and pipeline.cron:
        return [], build_gap_schedules(pipeline, served=served)
    return [], []
