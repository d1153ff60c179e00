"""One evaluation of a pipeline, shared by its gap sensor and its cron schedule.

Read the ops-db (cheaply when nothing changed), evaluate gaps, and turn the fired decisions
into at most ``sensor_max_runs_per_tick`` RunRequests, adding the dynamic partitions they need
first, and an observation of the raw data when new packages of the grouping arrived. A gap sensor's
tick also retires fully reduced sub-groups from the partitions (``sensors/retire.py``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace

import dagster as dg
from sqlalchemy.orm import Session

from ccat_assets.automation.gap_batches import plan_launches
from ccat_assets.automation.gaps import Decision
from ccat_assets.automation.gapstate import StateCache, load_pipeline_info, read_watermark
from ccat_assets.automation.gapstate.cache import Evaluation
from ccat_assets.dagster_face.batch_job import batched_steps
from ccat_assets.dagster_face.catalog import PipelineDef
from ccat_assets.dagster_face.factory import raw_data_key
from ccat_assets.opsdb.retired import restore, retired_keys
from ccat_assets.opsdb.session import session_scope
from ccat_assets.settings import Settings
from sensors.arrivals import Cursor, read_arrivals
from sensors.lost_retries import lost_retries, retry_request
from sensors.partitions import add_missing_partitions
from sensors.pools import ensure_pools, limits_token
from sensors.queued import active_pairs
from sensors.requests import launch_request
from sensors.retire import delete_partitions, forget_passes, partitions_by_grain, retire_reduced

_CACHE = StateCache(full_reload_seconds=300)


def state_cache(settings: Settings) -> StateCache:
    """The process-wide cache: the code server keeps it between ticks."""
    _CACHE.full_reload = dt.timedelta(seconds=settings.gap_full_reload_seconds)
    return _CACHE


def forget_states() -> None:
    """Drop every cached pipeline state and retirement schedule (tests switching
    databases)."""
    _CACHE.forget()
    forget_passes()


@dataclass
class Tick:
    cursor: Cursor
    run_requests: list[dg.RunRequest] = field(default_factory=list)
    #: The keys this tick added as partitions, per partitions def (added already: the
    #: daemon asks about each key of a request, one query per key).
    partitions_added: dict[str, list[str]] = field(default_factory=dict)
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
            asset_events=self.observations)


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
        retiring = retire_reduced(instance, session, pipeline, evaluation, now=now,
                                  settings=settings) if follow_arrivals else {}
        known = {s.name for s in pipeline.steps} if steps is None else set(steps)
        launches = plan_launches(
            [d for d in evaluation.fired if d.step in known],
            batch_sizes=({s.name: s.batch_size for s in batched_steps(pipeline)}
                         if batching else {}),
            limit=settings.sensor_max_runs_per_tick,
            step_order=[s.name for s in pipeline.steps])
        chosen = [d for launch in launches for d in launch]
        new_ids = arrivals.package_ids if arrivals else []
        wanted = wanted_partitions(session, pipeline, evaluation, chosen, new_ids, retiring)
    delete_partitions(instance, retiring)
    retries = [retry_request(run) for run in lost_retries(instance, pipeline.name, now=now)
               if steps is None or run.tags.get("ccat/step") in steps]
    tick = Tick(
        cursor=arrivals.cursor if arrivals else cursor,
        run_requests=retries + [launch_request(pipeline, launch, batching)
                                for launch in launches],
        partitions_added=add_missing_partitions(instance, wanted),
        observations=_observations(pipeline, evaluation, new_ids),
        reasons=evaluation.reasons,
    )
    token = limits_token([pipeline])
    if tick.cursor.pools != token:
        ensure_pools(instance, [pipeline])
        tick.cursor = replace(tick.cursor, pools=token)
    return tick


def wanted_partitions(session: Session, pipeline: PipelineDef, evaluation: Evaluation,
                      chosen: list[Decision], new_ids: list[int],
                      retiring: Mapping[str, Collection[str]]) -> dict[str, set[str]]:
    """The keys to be partitions after this tick: those launched now, and after arrivals
    every sub-group except the retired ones and those ``retiring`` now. A retired key comes
    back when it is launched or one of its packages arrived or changed; its retirement is
    forgotten then."""
    wanted: dict[str, set[str]] = {}
    state_steps = {s.name: s for s in evaluation.state.steps}
    by_grain = partitions_by_grain(pipeline)
    retired = retired_keys(session, sorted(set(by_grain.values()))) if new_ids else {}
    touched: dict[str, set[str]] = {}
    for grain, name in by_grain.items():
        keys = evaluation.state.package_keys.get(grain, {})
        touched[name] = {keys[pid] for pid in new_ids if pid in keys} - set(retiring.get(name, ()))
    for step in pipeline.steps:
        if step.partitioned and new_ids and step.name in state_steps:
            current = set(state_steps[step.name].subgroups)
            gone = retired.get(step.partitions_name, set()) | set(
                retiring.get(step.partitions_name, ()))
            wanted.setdefault(step.partitions_name, set()).update(
                (current - gone) | (touched[step.partitions_name] & current))
    for decision in chosen:
        step = pipeline.step(decision.step)
        if step.partitioned:
            wanted.setdefault(step.partitions_name, set()).add(decision.key)
            touched.setdefault(step.partitions_name, set()).add(decision.key)
    for name, keys in touched.items():
        if keys:
            restore(session, name, keys)
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
