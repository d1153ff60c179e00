"""The schedules of a CRON pipeline: the same gap evaluation, run at the pipeline's cron ticks.

A schedule resolves partitioned run requests against its one target job, and Dagster cannot
build one job over assets of different partitions, so a pipeline gets one schedule per grain,
each targeting the factory's per-grain job ``<pipeline>__<grain>`` and launching only that
grain's steps. All of them evaluate the same cached pipeline state at the same tick.

A step with ``batch_size`` above 1 is launched in batches, as a gap sensor launches it: its
own schedule targets the step's batch job (``ccat_assets.dagster_face.batch_job``), and its grain's
schedule leaves it out (a grain whose steps are all batched has no grain schedule). A nightly
CRON pipeline over the night's scans is then a few batch runs, not a run per scan.

A schedule cannot return dynamic-partition requests, so it adds the partitions of the runs it
launches itself, right before returning them.
"""

from __future__ import annotations

import dagster as dg

from ccat_assets.dagster_face.batch_job import batch_job_name, batched_steps
from ccat_assets.dagster_face.catalog import PipelineDef, StepDef
from ccat_assets.dagster_face.factory import build_pipeline_jobs
from ccat_assets.opsdb.types import utcnow
from ccat_assets.settings import get_settings
from sensors.arrivals import Cursor
from sensors.instance import sensor_instance
from sensors.tick import plan_tick


def grain_jobs(pipeline: PipelineDef) -> list[tuple[str, tuple[StepDef, ...]]]:
    """The factory's per-grain job names with the steps each runs.

    ``build_pipeline_jobs`` makes one job per grain in the order the grains first appear
    among the steps; grouping the steps the same way pairs each job with its steps.
    """
    grains: dict[str, list[StepDef]] = {}
    for step in pipeline.steps:
        grains.setdefault(step.partitions_name if step.partitioned else "", []).append(step)
    jobs = build_pipeline_jobs(pipeline)
    if len(jobs) != len(grains):
        raise AssertionError(f"{pipeline.name}: {len(jobs)} grain jobs for {len(grains)} grains")
    return [(job.name, tuple(steps)) for job, steps in zip(jobs, grains.values(), strict=True)]


def gap_schedule_name(job_name: str) -> str:
    return f"{job_name}__gap_schedule"


def build_gap_schedules(pipeline: PipelineDef, *, served: bool) -> list[dg.ScheduleDefinition]:
    if not pipeline.cron:
        raise ValueError(f"CRON pipeline {pipeline.name} has no trigger cron expression")
    running = pipeline.enabled and served
    batched = {s.name for s in batched_steps(pipeline)}
    schedules = []
    for job_name, steps in grain_jobs(pipeline):
        unbatched = tuple(s for s in steps if s.name not in batched)
        if unbatched:
            schedules.append(_schedule(pipeline, job_name, unbatched, running, batching=False))
    return schedules + [_schedule(pipeline, batch_job_name(pipeline.name, step.name), (step,),
                                  running, batching=True)
                        for step in batched_steps(pipeline)]


def _schedule(pipeline: PipelineDef, job_name: str, steps: tuple[StepDef, ...],
              running: bool, *, batching: bool) -> dg.ScheduleDefinition:
    names = frozenset(s.name for s in steps)

    @dg.schedule(
        job_name=job_name,
        name=gap_schedule_name(job_name),
        cron_schedule=pipeline.cron,
        execution_timezone="UTC",
        default_status=(dg.DefaultScheduleStatus.RUNNING if running
                        else dg.DefaultScheduleStatus.STOPPED),
        description=(f"Evaluates the gaps of pipeline {pipeline.name} at {pipeline.cron} (UTC) "
                     f"and launches those of steps {', '.join(sorted(names))}."),
        tags={"ccat/pipeline": pipeline.name},
    )
    def _gap_schedule(context: dg.ScheduleEvaluationContext):
        instance = sensor_instance(context)
        tick = plan_tick(instance, pipeline, cursor=Cursor(), now=utcnow(),
                         settings=get_settings(), follow_arrivals=False, steps=names,
                         batching=batching)
        if not tick.run_requests:
            return dg.SkipReason(tick.summary)
        return tick.run_requests

    return _gap_schedule
