"""A plain snapshot of the pipelines in the ops-db, the single input of the Dagster factory.

Reading the database once into frozen dataclasses keeps the factory pure (same snapshot,
same definitions) and lets tests build definitions without a database.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from ccat_assets.automation.fingerprint import step_code_version
from ccat_assets.automation.gapstate.load import latest_versions, version_to_run
from ccat_assets.grouping.keys import grain_name
from ccat_assets.opsdb import DataLocation, Pipeline, ReductionStep, TriggerType
from ccat_assets.specs.spec import PipelineSpec, topological_order


@dataclass(frozen=True)
class StepDef:
    pipeline: str
    name: str
    description: str | None
    software: str
    group_by: tuple[str, ...]
    depends_on: tuple[str, ...]
    max_concurrent_runs: int | None
    max_retries: int
    cooldown_seconds: int
    schedule: str | None
    batch_size: int
    is_final: bool
    #: The asset's code version (``fingerprint.step_code_version``): the step's version token
    #: and config hash of now; None without a version to run, or built from a spec alone.
    code_version: str | None = None

    @property
    def grain(self) -> str:
        return grain_name(self.group_by)

    @property
    def partitioned(self) -> bool:
        return bool(self.group_by)

    @property
    def partitions_name(self) -> str:
        """Steps of one pipeline and grain share partition keys, so they map by identity."""
        return f"{self.pipeline}__{self.grain}"

    @property
    def pool(self) -> str:
        return f"ccat/{self.pipeline}/{self.name}"


@dataclass(frozen=True)
class PipelineDef:
    name: str
    description: str | None
    grouping: str
    processing_location: str
    processing_location_id: int
    trigger_type: TriggerType
    cron: str | None
    enabled: bool
    priority: int
    steps: tuple[StepDef, ...]

    def step(self, name: str) -> StepDef:
        return next(s for s in self.steps if s.name == name)


def load_catalog(session: Session) -> list[PipelineDef]:
    pipelines, unreadable = load_catalog_checked(session)
    if unreadable:
        raise ValueError("; ".join(f"pipeline {u.name}: {u.reason}" for u in unreadable))
    return pipelines


@dataclass(frozen=True)
class UnreadablePipeline:
    """A pipeline row that cannot be turned into a :class:`PipelineDef` (written by a tool
    other than ``ccat-wm apply``, or left over from an older schema), and why."""

    name: str
    reason: str


def load_catalog_checked(session: Session) -> tuple[list[PipelineDef], list[UnreadablePipeline]]:
    """Every pipeline of the ops-db, each read on its own: one unreadable row is reported,
    never allowed to stop the others from loading."""
    pipelines = session.scalars(
        sa.select(Pipeline).order_by(Pipeline.name).options(
            selectinload(Pipeline.steps).selectinload(ReductionStep.depends_on),
            selectinload(Pipeline.steps).selectinload(ReductionStep.software),
            selectinload(Pipeline.steps).selectinload(ReductionStep.config),
            selectinload(Pipeline.steps).selectinload(ReductionStep.pinned_version),
            selectinload(Pipeline.data_grouping),
        )
    ).all()
    locations = dict(session.execute(sa.select(DataLocation.id, DataLocation.name)).all())
    latest = latest_versions(session, {s.reduction_software_id for p in pipelines
                                       for s in p.steps})
    loaded: list[PipelineDef] = []
    unreadable: list[UnreadablePipeline] = []
    for row in pipelines:
        try:
            loaded.append(_pipeline_def(row, locations, latest))
        except Exception as exc:  # noqa: BLE001 - any bad row is this pipeline's problem only
            unreadable.append(UnreadablePipeline(row.name, f"{type(exc).__name__}: {exc}"))
    return loaded, unreadable


def _code_version(step: ReductionStep, latest: dict[int, str]) -> str | None:
    version, _ = version_to_run(step, latest)
    return step_code_version(step.config.content_hash, step.version_policy, version)


def _pipeline_def(pipeline: Pipeline, locations: dict[int, str],
                  latest: dict[int, str]) -> PipelineDef:
    steps = [
        StepDef(pipeline=pipeline.name, name=s.name, description=s.description,
                software=s.software.name, group_by=tuple(s.group_by or ()),
                depends_on=tuple(d.name for d in s.depends_on),
                max_concurrent_runs=s.max_concurrent_runs, max_retries=s.max_retries,
                cooldown_seconds=s.cooldown_seconds, schedule=s.schedule,
                batch_size=s.batch_size, is_final=False,
                code_version=_code_version(s, latest))
        for s in pipeline.steps
    ]
    return PipelineDef(
        name=pipeline.name, description=pipeline.description,
        grouping=pipeline.data_grouping.name,
        processing_location=locations.get(pipeline.processing_location_id, "?"),
        processing_location_id=pipeline.processing_location_id,
        trigger_type=TriggerType(pipeline.trigger_type),
        cron=(pipeline.trigger_config or {}).get("cron"), enabled=pipeline.enabled,
        priority=pipeline.priority, steps=_ordered(steps),
    )


def pipeline_def_from_spec(spec: PipelineSpec, processing_location_id: int = 0) -> PipelineDef:
    """The snapshot ``spec`` becomes once applied, without a database: validation builds its
    Dagster definitions from this to find what Dagster would refuse at load. Without the
    ops-db the latest versions are unknown, so steps carry no code version."""
    steps = [
        StepDef(pipeline=spec.name, name=s.name, description=s.description,
                software=s.software, group_by=tuple(s.group_by), depends_on=tuple(s.depends_on),
                max_concurrent_runs=s.max_concurrent_runs, max_retries=s.max_retries,
                cooldown_seconds=s.cooldown_seconds, schedule=s.schedule,
                batch_size=s.batch_size, is_final=False)
        for s in spec.steps
    ]
    return PipelineDef(
        name=spec.name, description=spec.description, grouping=spec.grouping,
        processing_location=spec.processing_location,
        processing_location_id=processing_location_id, trigger_type=spec.trigger.type,
        cron=spec.trigger.cron, enabled=spec.enabled, priority=spec.priority,
        steps=_ordered(steps),
    )


def _ordered(steps: list[StepDef]) -> tuple[StepDef, ...]:
    """Steps in dependency order; a step no other step consumes is final."""
    consumed = {d for s in steps for d in s.depends_on}
    by_name = {s.name: s for s in steps}
    order = topological_order({s.name: list(s.depends_on) for s in steps})
    return tuple(replace(by_name[n], is_final=n not in consumed) for n in order)
