"""One evaluation of a pipeline, shared by its gap sensor and its cron schedule.

Read the ops-db (cheaply when nothing changed), evaluate gaps, and turn the fired decisions
into at most ``sensor_max_runs_per_tick`` RunRequests, with the dynamic partitions they need
and an observation of the raw data when new packages of the grouping arrived.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field, replace

import dagster as dg

from ccat_assets.automation.gap_batches import plan_launches
from ccat_assets.automation.gaps import Decision
from ccat_assets.automation.gapstate import StateCache, load_pipeline_info, read_watermark
from ccat_assets.automation.gapstate.cache import Evaluation
from ccat_assets.dagster_face.batch_job import batched_steps
from ccat_assets.dagster_face.catalog import PipelineDef
from ccat_assets.dagster_face.factory import raw_data_key
from ccat_assets.opsdb.session import session_scope
from ccat_assets.settings import Settings
from sensors.arrivals import Cursor, read_arrivals
from sensors.partitions import missing_partitions
from sensors.pools import ensure_pools, limits_token
from sensors.queued import active_pairs
from sensors.requests import launch_request

_CACHE = StateCache(full_reload_seconds=300)


def state_cache(settings: Settings) -> StateCache:
    """The process-wide cache: the code server keeps it between ticks."""
    _CACHE.full_reload = dt.timedelta(seconds=settings.gap_full_reload_seconds)
    return _CACHE


def forget_states() -> None:
    """Drop every cached pipeline state (tests switching databases)."""
    _CACHE.forget()


@dataclass
class Tick:
    cursor: Cursor
    run_requests: list[dg.RunRequest] = field(default_factory=list)
    partition_requests: list[dg.AddDynamicPartitionsRequest] = field(default_factory=list)
    observations: list[dg.AssetObservation] = field(default_factory=list)
    #: How many pairs have each decision reason.
    reasons: Counter[str] = field(default_factory=Counter)
    skip_message: str | None = None

    @property
    def summary(self) -> str:
        """Why nothing runs, e.g. ``nothing to run: 3 in_flight, 9 up_to_date``."""
        if self.skip_message:
            return self.skip_message
        counts = ", ".join(f"{n} {r}" for r, n in sorted(self.reasons.items()))
        return f"nothing to run: {counts or 'no sub-groups'}"

    def sensor_result(self) -> dg.SensorResult:
        skip = None if self.run_requests else self.summary
        return dg.SensorResult(
            run_requests=self.run_requests, skip_reason=skip, cursor=self.cursor.dump(),
            dynamic_partitions_requests=self.partition_requests, asset_events=self.observations)


def plan_tick(instance: dg.DagsterInstance, pipeline: PipelineDef, *, cursor: Cursor,
              now: dt.datetime, settings: Settings, follow_arrivals: bool = True,
              steps: Collection[str] | None = None, batching: bool = True) -> Tick:
    """Decide what ``pipeline`` runs now; ``follow_arrivals`` registers the partitions of new
    sub-groups and observes the raw data (sensors; schedules only add what they launch);
    ``steps`` limits the launched runs to those steps (default: all of the pipeline);
    ``batching`` packs the gaps of steps with ``batch_size`` > 1 into batch runs (a schedule
    of a per-grain job launches one run per gap; a batched step has a schedule of its own)."""
    url = settings.database_url
    queued = active_pairs(instance, pipeline)
    with session_scope(url) as session:
        info = load_pipeline_info(session, pipeline.name)
        if not info.enabled:
            return Tick(cursor, skip_message=f"pipeline {pipeline.name} is disabled")
        if not info.served_by(settings.processing_location_id):
            return Tick(cursor, skip_message=(
                f"pipeline {pipeline.name} runs at {info.processing_location}, this instance "
                f"serves processing location {settings.processing_location_id!r}"))
        arrivals = read_arrivals(session, cursor) if follow_arrivals else None
        evaluation = state_cache(settings).evaluate(
            (url, pipeline.name), session=session, name=pipeline.name,
            mark=read_watermark(session, info.id), now=now,
            queued=queued)
    known = {s.name for s in pipeline.steps} if steps is None else set(steps)
    launches = plan_launches(
        [d for d in evaluation.fired if d.step in known],
        batch_sizes={s.name: s.batch_size for s in batched_steps(pipeline)} if batching else {},
        limit=settings.sensor_max_runs_per_tick, step_order=[s.name for s in pipeline.steps])
    chosen = [d for launch in launches for d in launch]
    new_ids = arrivals.package_ids if arrivals else []
    tick = Tick(
        cursor=arrivals.cursor if arrivals else cursor,
        run_requests=[launch_request(pipeline, launch, batching) for launch in launches],
        partition_requests=missing_partitions(
            instance, _wanted_partitions(pipeline, evaluation, chosen, bool(new_ids))),
        observations=_observations(pipeline, evaluation, new_ids),
        reasons=evaluation.reasons,
    )
    token = limits_token([pipeline])
    if tick.cursor.pools != token:
        ensure_pools(instance, [pipeline])
        tick.cursor = replace(tick.cursor, pools=token)
    return tick


def _wanted_partitions(pipeline: PipelineDef, evaluation: Evaluation, chosen: list[Decision],
                       arrived: bool) -> dict[str, set[str]]:
    """Every key of every partitioned grain after arrivals; else only the keys launched now."""
    wanted: dict[str, set[str]] = {}
    state_steps = {s.name: s for s in evaluation.state.steps}
    for step in pipeline.steps:
        if step.partitioned and arrived and step.name in state_steps:
            wanted.setdefault(step.partitions_name, set()).update(state_steps[step.name].subgroups)
    for decision in chosen:
        step = pipeline.step(decision.step)
        if step.partitioned:
            wanted.setdefault(step.partitions_name, set()).add(decision.key)
    return wanted


def _observations(pipeline: PipelineDef, evaluation: Evaluation,
                  new_ids: list[int]) -> list[dg.AssetObservation]:
    """An observation of the grouping's raw data when packages of it arrived or changed."""
    if not new_ids or not evaluation.state.steps:
        return []
    first = evaluation.state.steps[0]
    in_grouping = {pid for sg in first.subgroups.values() for pid in sg.raw_data_package_ids}
    arrived = sum(1 for pid in new_ids if pid in in_grouping)
    if not arrived:
        return []
    return [dg.AssetObservation(
        asset_key=raw_data_key(pipeline.grouping),
        metadata={
            "new_or_changed_packages": dg.MetadataValue.int(arrived),
            "packages": dg.MetadataValue.int(len(in_grouping)),
            f"sub_groups ({first.name})": dg.MetadataValue.int(len(first.subgroups)),
            "observed_by": pipeline.name,
        },
    )]
