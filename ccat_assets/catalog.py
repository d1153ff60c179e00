"""A plain snapshot of the pipelines in the ops-db, the single input of the Dagster factory.

Reading the database once into frozen dataclasses keeps the factory pure (same snapshot,
same definitions) and lets tests build definitions without a database.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from ccat_assets.grouping.keys import grain_name
from ccat_assets.opsdb import DataLocation, Pipeline, ReductionStep, TriggerType
from ccat_assets.spec import topological_order


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
    pipelines = session.scalars(
        sa.select(Pipeline).order_by(Pipeline.name).options(
            selectinload(Pipeline.steps).selectinload(ReductionStep.depends_on),
            selectinload(Pipeline.steps).selectinload(ReductionStep.software),
            selectinload(Pipeline.data_grouping),
        )
    ).all()
    locations = dict(session.execute(sa.select(DataLocation.id, DataLocation.name)).all())
    return [_pipeline_def(p, locations) for p in pipelines]


def _pipeline_def(pipeline: Pipeline, locations: dict[int, str]) -> PipelineDef:
    depends = {s.name: [d.name for d in s.depends_on] for s in pipeline.steps}
    consumed = {d for deps in depends.values() for d in deps}
    order = topological_order(depends)
    by_name = {s.name: s for s in pipeline.steps}
    steps = tuple(
        StepDef(
            pipeline=pipeline.name, name=s.name, description=s.description,
            software=s.software.name, group_by=tuple(s.group_by or ()),
            depends_on=tuple(depends[s.name]), max_concurrent_runs=s.max_concurrent_runs,
            max_retries=s.max_retries, cooldown_seconds=s.cooldown_seconds,
            schedule=s.schedule, batch_size=s.batch_size, is_final=s.name not in consumed,
        )
        for s in (by_name[n] for n in order)
    )
    return PipelineDef(
        name=pipeline.name, description=pipeline.description,
        grouping=pipeline.data_grouping.name,
        processing_location=locations.get(pipeline.processing_location_id, "?"),
        processing_location_id=pipeline.processing_location_id,
        trigger_type=TriggerType(pipeline.trigger_type),
        cron=(pipeline.trigger_config or {}).get("cron"), enabled=pipeline.enabled,
        priority=pipeline.priority, steps=steps,
    )
