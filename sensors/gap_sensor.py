"""The gap sensor of a CONTINUOUS pipeline: follows raw data arrivals and launches gaps."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)

from ccat_assets.dagster_face.catalog import PipelineDef
from ccat_assets.opsdb.types import utcnow
from ccat_assets.settings import get_settings
from resources.forkserver_warmup import warm_forkserver
from sensors.arrivals import Cursor
from sensors.instance import sensor_instance
from sensors.partitions import partition_count
from sensors.tick import plan_tick


def gap_sensor_name(pipeline: str) -> str:
    return f"{pipeline}__gap_sensor"


#: A per-grain asset job or a batch job.
LaunchableJob = dg.JobDefinition | UnresolvedAssetJobDefinition


def build_gap_sensor(pipeline: PipelineDef, *, served: bool, interval_seconds: int,
                     jobs: Sequence[LaunchableJob]) -> dg.SensorDefinition:
    """Running by default when the pipeline is enabled and served by this instance.

    It targets the pipeline's jobs (``jobs``, the very objects of the code location): a gap
    runs as its step's asset in the per-grain job, a batch as the step's batch job.
    """
    running = pipeline.enabled and served

    @dg.sensor(
        name=gap_sensor_name(pipeline.name),
        minimum_interval_seconds=interval_seconds,
        default_status=(dg.DefaultSensorStatus.RUNNING if running
                        else dg.DefaultSensorStatus.STOPPED),
        jobs=list(jobs),
        description=(
            f"Finds the gaps of pipeline {pipeline.name} (missing or outdated step results "
            "per sub-group) and launches them; registers new sub-groups as partitions and "
            f"observes the raw data of grouping {pipeline.grouping}."),
        tags={"ccat/pipeline": pipeline.name},
    )
    def _gap_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        instance = sensor_instance(context)
        tick = plan_tick(instance, pipeline, cursor=Cursor.parse(context.cursor),
                         now=utcnow(), settings=get_settings())
        if tick.run_requests:
            warm_forkserver(instance)  # imports while the daemon queues and launches them
        if tick.partitions_added:
            context.log.info(f"registered {partition_count(tick.partitions_added)} new "
                             "sub-group(s) as partitions")
        for request in tick.run_requests:
            context.log.info(f"launch {request.tags['ccat/step']}/{request.tags['ccat/sub_group']}"
                             f" ({request.tags['ccat/reason']})")
        return tick.sensor_result()

    return _gap_sensor
