"""The code location assembled pipeline by pipeline, so that no pipeline can take it down.

Dagster loads a code location all or nothing: one schedule with a cron it refuses, one
duplicate job name, and every pipeline, sensor and schedule of the instance is gone. So:

1. each pipeline's own parts (assets, checks, per-grain and batch jobs, gap sensor or
   schedules) are built on their own; one whose construction Dagster refuses (a schedule's
   cron is checked right there) is left out with the reason
   (:class:`~ccat_assets.dagster_face.not_loaded.NotLoaded`);
2. the names Dagster wants unique across the location are claimed pipeline by pipeline
   (parts are joined with ``__``, so pipeline ``p`` with step ``x__y`` and pipeline ``p__x``
   with step ``y`` build the same job and op names); a later pipeline cannot take them;
3. the assembled location is resolved as Dagster resolves it at load, once; Dagster keeps
   that resolution, so a healthy location costs what it did before;
4. only if that fails, each pipeline is resolved (and snapshotted) as a small ``Definitions``
   of its own and the ones Dagster refuses are left out; should the rest still fail together,
   pipelines are added one at a time.

``ccat-wm validate`` and ``apply`` run the same assembly on the specs they are given, so what
would be left out here is refused there first.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from ccat_assets.dagster_face.batch_job import build_batch_jobs
from ccat_assets.dagster_face.catalog import PipelineDef, UnreadablePipeline
from ccat_assets.dagster_face.factory import (
    build_pipeline_definitions,
    build_pipeline_jobs,
    build_raw_data_asset,
)
from ccat_assets.dagster_face.not_loaded import NotLoaded, describe, placeholder_asset, refused
from ccat_assets.settings import Settings, get_settings
from resources.execution import ExecutionResource
from resources.opsdb import OpsDBResource
from sensors import build_pipeline_automation, shared_sensors
from sensors.gap_sensor import LaunchableJob

try:  # what the code server serializes for the webserver and daemon (internal API)
    from dagster._core.remote_representation.external_data import RepositorySnap
except ImportError:  # pragma: no cover - a Dagster that moved it: resolution still checks
    RepositorySnap = None


def default_resources() -> dict[str, Any]:
    opsdb = OpsDBResource()
    return {"opsdb": opsdb, "execution": ExecutionResource(opsdb=opsdb)}


@dataclass(frozen=True)
class PipelineParts:
    """Everything of one pipeline in the code location. Built once: its sensors target these
    very job objects."""

    pipeline: PipelineDef
    assets: tuple[Any, ...]
    asset_checks: tuple[Any, ...]
    jobs: tuple[LaunchableJob, ...]
    sensors: tuple[dg.SensorDefinition, ...]
    schedules: tuple[dg.ScheduleDefinition, ...]

    def definitions(self, resources: Mapping[str, Any]) -> dg.Definitions:
        """These parts alone, with the raw data asset they depend on, as Dagster loads them."""
        return _definitions([self], resources, [], shared=False)

    def names(self) -> set[str]:
        """The names these parts take in the location's namespaces that must stay unique."""
        names = {f"partitions {s.partitions_name}" for s in self.pipeline.steps if s.partitioned}
        for asset in self.assets:
            names |= {f"asset {k.to_user_string()}" for k in asset.keys}
            names.add(f"name {asset.node_def.name}")
        for checks in self.asset_checks:
            names |= {f"asset check {k.to_user_string()}" for k in checks.check_keys}
            names.add(f"name {checks.node_def.name}")
        for job in self.jobs:
            names.add(f"name {job.name}")
            if isinstance(job, dg.JobDefinition):
                names |= {f"name {node.name}" for node in job.all_node_defs}
        names |= {f"name {d.name}" for d in (*self.sensors, *self.schedules)}
        return names


def build_parts(pipeline: PipelineDef, settings: Settings) -> PipelineParts:
    own = build_pipeline_definitions(pipeline)
    jobs = [*build_pipeline_jobs(pipeline), *build_batch_jobs(pipeline)]
    sensors, schedules = build_pipeline_automation(pipeline, settings, jobs)
    return PipelineParts(pipeline=pipeline, assets=tuple(own.assets or ()),
                         asset_checks=tuple(own.asset_checks or ()), jobs=tuple(jobs),
                         sensors=tuple(sensors), schedules=tuple(schedules))


def build_each(catalog: Iterable[PipelineDef], settings: Settings,
               ) -> tuple[list[PipelineParts], list[NotLoaded]]:
    """Every pipeline's parts built on its own, in catalog order (Dagster refuses a bad cron
    right here, when the schedule is constructed); one that takes a name an earlier one holds
    is left out with the reason."""
    loaded: list[PipelineParts] = []
    not_loaded: list[NotLoaded] = []
    owner: dict[str, str] = {}
    for pipeline in catalog:
        try:
            parts = build_parts(pipeline, settings)
            names = parts.names()
        except Exception as exc:  # noqa: BLE001 - whatever Dagster refuses, only this pipeline
            not_loaded.append(refused(pipeline, exc))
            continue
        taken = sorted(n for n in names if n in owner)
        if taken:
            kind, _, name = taken[0].rpartition(" ")
            not_loaded.append(NotLoaded(
                pipeline.name,
                f"Dagster {kind} {name!r} is also built by pipeline {owner[taken[0]]!r}"
                + (f" (and {len(taken) - 1} more names)" if len(taken) > 1 else "")
                + "; names are joined with '__', so rename this pipeline or its step",
                "name"))
            continue
        owner.update(dict.fromkeys(names, pipeline.name))
        loaded.append(parts)
    return loaded, not_loaded


def check_each(candidates: Sequence[PipelineParts], resources: Mapping[str, Any],
               ) -> tuple[list[PipelineParts], list[NotLoaded]]:
    """Each pipeline's parts resolved and snapshotted on their own, as Dagster's code server
    does with a whole location; the ones Dagster refuses are left out with the reason."""
    kept: list[PipelineParts] = []
    left_out: list[NotLoaded] = []
    for parts in candidates:
        try:
            _resolve(parts.definitions(resources), snapshot=True)
        except Exception as exc:  # noqa: BLE001 - whatever Dagster refuses, only this pipeline
            left_out.append(refused(parts.pipeline, exc))
            continue
        kept.append(parts)
    return kept, left_out


@dataclass(frozen=True)
class LoadResult:
    definitions: dg.Definitions
    loaded: tuple[str, ...]
    not_loaded: tuple[NotLoaded, ...]


def assemble(catalog: Sequence[PipelineDef], settings: Settings,
             unreadable: Sequence[UnreadablePipeline] = (),
             resources: Mapping[str, Any] | None = None, *,
             snapshot: bool = False) -> LoadResult:
    """The whole code location: every pipeline Dagster accepts, the shared sensors, and a
    placeholder asset per pipeline left out.

    The assembled location is resolved first (Dagster keeps that resolution, so a location
    that loads costs what it did before); resolving each pipeline on its own roughly doubles
    the cost (``bench/definitions_load.py``), so it is done only when the whole fails, and
    then pipelines are added one at a time if the rest still fails together. ``snapshot``
    also takes the snapshot the code server takes (validation does; at load it would add a
    third of the load time).
    """
    resources = resources if resources is not None else default_resources()
    loaded, not_loaded = build_each(catalog, settings)
    not_loaded += [NotLoaded(u.name, u.reason) for u in unreadable]
    for narrow in (check_each, _one_at_a_time):
        defs = _definitions(loaded, resources, not_loaded)
        if _loads(defs, snapshot):
            return LoadResult(defs, tuple(p.pipeline.name for p in loaded), tuple(not_loaded))
        loaded, more = narrow(loaded, resources)
        not_loaded += more
    defs = _definitions(loaded, resources, not_loaded)
    if not _loads(defs, snapshot):
        defs = _definitions(loaded, resources, [])  # a placeholder must never cost the location
    return LoadResult(defs, tuple(p.pipeline.name for p in loaded), tuple(not_loaded))


def _loads(defs: dg.Definitions, snapshot: bool) -> bool:
    try:
        _resolve(defs, snapshot=snapshot)
    except Exception:  # noqa: BLE001 - the caller narrows down which pipeline it is
        return False
    return True


def _one_at_a_time(candidates: Sequence[PipelineParts], resources: Mapping[str, Any],
                   ) -> tuple[list[PipelineParts], list[NotLoaded]]:
    """Add pipelines one by one, leaving out each one the location refuses with the others."""
    kept: list[PipelineParts] = []
    left_out: list[NotLoaded] = []
    for parts in candidates:
        try:
            _resolve(_definitions([*kept, parts], resources, []), snapshot=True)
        except Exception as exc:  # noqa: BLE001
            item = refused(parts.pipeline, exc)
            left_out.append(NotLoaded(
                item.pipeline, f"refused together with the other pipelines: {describe(exc)}",
                item.field))
            continue
        kept.append(parts)
    return kept, left_out


def _resolve(defs: dg.Definitions, *, snapshot: bool = False) -> None:
    """Resolve ``defs`` as Dagster does at load (its repository is cached on ``defs``, so the
    location's final resolution is not repeated by Dagster); with ``snapshot``, also take the
    snapshot the code server sends to the webserver and daemon, a later stage that can refuse
    too. Dagster's beta warning about its own internal sensor copies is not ours to show."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        dg.Definitions.validate_loadable(defs)
        if snapshot and RepositorySnap is not None:
            RepositorySnap.from_def(defs.get_repository_def())


def _definitions(loaded: Sequence[PipelineParts], resources: Mapping[str, Any],
                 not_loaded: Sequence[NotLoaded], *, shared: bool = True) -> dg.Definitions:
    groupings = sorted({p.pipeline.grouping for p in loaded})
    return dg.Definitions(
        assets=[*(build_raw_data_asset(g) for g in groupings),
                *(a for p in loaded for a in p.assets),
                *(placeholder_asset(item) for item in not_loaded)],
        asset_checks=[c for p in loaded for c in p.asset_checks],
        jobs=[j for p in loaded for j in p.jobs],
        sensors=[*(shared_sensors([p.pipeline for p in loaded], get_settings()) if shared
                   else ()), *(s for p in loaded for s in p.sensors)],
        schedules=[s for p in loaded for s in p.schedules],
        resources=dict(resources),
        executor=dg.in_process_executor,
    )
