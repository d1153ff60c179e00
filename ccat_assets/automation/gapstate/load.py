"""Load a whole pipeline's gap-evaluation state from the ops-db in a handful of queries.

The state has three parts, each loaded in one go and reloadable on its own (a new package
needs only the grains re-resolved, a finished run only the run tables re-read):

- the definition: steps, configs, versions (a few small ORM queries);
- the grains: each distinct ``group_by`` resolved once, not once per sub-group;
- the runs: see :mod:`ccat_assets.automation.gapstate.runs`.

The fingerprint the state leads to is the executor's
(``ccat_assets.automation.inputs.plan_inputs``): same
packages, same newest completed upstream run per upstream key, same products except LOG, same
config and version.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from ccat_assets.automation.gaps import PipelineState, StepState
from ccat_assets.automation.gapstate.runs import RunTables, load_runs
from ccat_assets.grouping import SubGroup, resolve_subgroups
from ccat_assets.opsdb import (
    DataLocation,
    Pipeline,
    ReductionSoftwareVersion,
    ReductionStep,
    TriggerType,
    VersionPolicy,
)
from ccat_assets.specs.spec import topological_order

Grain = tuple[str, ...]
Grains = dict[Grain, list[SubGroup]]


class UnknownPipeline(LookupError):
    """No pipeline of that name in the ops-db."""


@dataclass(frozen=True)
class PipelineInfo:
    """What decides whether and when a pipeline is evaluated here."""

    id: int
    name: str
    enabled: bool
    trigger_type: TriggerType
    priority: int
    processing_location_id: int
    processing_location: str

    def served_by(self, location_setting: str) -> bool:
        return serves_location(location_setting, self.processing_location_id,
                               self.processing_location)


def serves_location(setting: str, location_id: int, location_name: str) -> bool:
    """True when PROCESSING_LOCATION_ID ``setting`` (an id or a name) names this location."""
    setting = setting.strip()
    return int(setting) == location_id if setting.isdigit() else setting == location_name


@dataclass(frozen=True)
class StepDefinition:
    """A step's rules as gap evaluation needs them (no runs, no sub-groups)."""

    id: int
    name: str
    group_by: Grain
    depends_on: tuple[str, ...]
    cooldown_seconds: int
    max_retries: int
    schedule: str | None
    policy: VersionPolicy
    config_hash: str
    #: The software version a run would use now (``inputs.select_version``), or None.
    version: str | None
    version_problem: str | None


@dataclass(frozen=True)
class PipelineDefinition:
    name: str
    priority: int
    filter_rules: list
    instrument_module_id: int | None
    steps: tuple[StepDefinition, ...]  # topological order

    @property
    def grains(self) -> list[Grain]:
        return list(dict.fromkeys(s.group_by for s in self.steps))

    @property
    def upstream_ids(self) -> set[int]:
        names = {d for s in self.steps for d in s.depends_on}
        return {s.id for s in self.steps if s.name in names}


def _unknown(session: Session, name: str) -> UnknownPipeline:
    known = ", ".join(session.scalars(sa.select(Pipeline.name).order_by(Pipeline.name)))
    return UnknownPipeline(f"no pipeline {name!r} in the ops-db (known: {known or 'none'})")


def load_pipeline_info(session: Session, name: str) -> PipelineInfo:
    row = session.execute(
        sa.select(Pipeline.id, Pipeline.enabled, Pipeline.trigger_type, Pipeline.priority,
                  Pipeline.processing_location_id, DataLocation.name)
        .join(DataLocation, DataLocation.id == Pipeline.processing_location_id)
        .where(Pipeline.name == name)
    ).one_or_none()
    if row is None:
        raise _unknown(session, name)
    return PipelineInfo(id=row[0], name=name, enabled=row[1], trigger_type=TriggerType(row[2]),
                        priority=row[3], processing_location_id=row[4],
                        processing_location=row[5])


def load_definition(session: Session, name: str) -> PipelineDefinition:
    pipeline = session.scalar(
        sa.select(Pipeline).where(Pipeline.name == name).options(
            selectinload(Pipeline.steps).selectinload(ReductionStep.depends_on),
            selectinload(Pipeline.steps).selectinload(ReductionStep.config),
            selectinload(Pipeline.steps).selectinload(ReductionStep.pinned_version),
            selectinload(Pipeline.data_grouping),
        )
    )
    if pipeline is None:
        raise _unknown(session, name)
    latest = latest_versions(session, {s.reduction_software_id for s in pipeline.steps})
    order = topological_order({s.name: [d.name for d in s.depends_on] for s in pipeline.steps})
    by_name = {s.name: s for s in pipeline.steps}
    steps = []
    for step in (by_name[n] for n in order):
        version, problem = version_to_run(step, latest)
        steps.append(StepDefinition(
            id=step.id, name=step.name, group_by=tuple(step.group_by or ()),
            depends_on=tuple(d.name for d in step.depends_on),
            cooldown_seconds=step.cooldown_seconds, max_retries=step.max_retries,
            schedule=step.schedule, policy=VersionPolicy(step.version_policy),
            config_hash=step.config.content_hash, version=version, version_problem=problem))
    grouping = pipeline.data_grouping
    return PipelineDefinition(name=pipeline.name, priority=pipeline.priority,
                              filter_rules=list(grouping.filter_rules or []),
                              instrument_module_id=grouping.instrument_module_id,
                              steps=tuple(steps))


def resolve_grains(session: Session, definition: PipelineDefinition) -> Grains:
    """Every grain of the pipeline resolved once: one grouping query per distinct group_by."""
    return {grain: resolve_subgroups(
        session, filter_rules=definition.filter_rules, group_by=list(grain),
        instrument_module_id=definition.instrument_module_id) for grain in definition.grains}


def load_step_runs(session: Session, definition: PipelineDefinition) -> RunTables:
    return load_runs(session, [s.id for s in definition.steps], definition.upstream_ids)


def assemble(definition: PipelineDefinition, grains: Grains, runs: RunTables) -> PipelineState:
    """The pure state gap evaluation reads, from the three loaded parts."""
    steps = tuple(
        StepState(
            name=s.name, group_by=s.group_by, depends_on=s.depends_on,
            cooldown_seconds=s.cooldown_seconds, max_retries=s.max_retries,
            schedule=s.schedule, config_hash=s.config_hash, version_policy=s.policy,
            version=s.version, version_problem=s.version_problem,
            subgroups={sg.key: sg for sg in grains.get(s.group_by, ())},
            completed=runs.completed.get(s.id, {}),
            in_flight=frozenset(runs.in_flight.get(s.id, ())),
            failures=runs.failures.get(s.id, {}))
        for s in definition.steps)
    by_name = {s.name: s for s in definition.steps}
    # Package -> key maps only for grains another grain depends on (re-grouping a scope).
    coarser = {by_name[d].group_by for s in definition.steps for d in s.depends_on
               if by_name[d].group_by != s.group_by}
    package_keys = {grain: {pid: sg.key for sg in grains.get(grain, ())
                            for pid in sg.raw_data_package_ids} for grain in coarser}
    return PipelineState(name=definition.name, priority=definition.priority, steps=steps,
                         package_keys=package_keys)


def load_pipeline_state(session: Session, name: str) -> PipelineState:
    """The gap-evaluation state of pipeline ``name`` as the ops-db has it now."""
    definition = load_definition(session, name)
    return assemble(definition, resolve_grains(session, definition),
                    load_step_runs(session, definition))


def latest_versions(session: Session, software_ids: set[int]) -> dict[int, str]:
    """The latest version of each software (id -> version), in one query."""
    rows = session.execute(
        sa.select(ReductionSoftwareVersion.reduction_software_id, ReductionSoftwareVersion.version)
        .where(ReductionSoftwareVersion.reduction_software_id.in_(sorted(software_ids)),
               ReductionSoftwareVersion.is_latest.is_(True)))
    return {software_id: version for software_id, version in rows}


def version_to_run(step: ReductionStep,
                   latest: dict[int, str]) -> tuple[str | None, str | None]:
    """The version a run would use now (``inputs.select_version``), or why there is none."""
    policy = VersionPolicy(step.version_policy)
    if policy == VersionPolicy.EXACT:
        if step.pinned_version is None:
            return None, f"step {step.name!r} is 'exact' but pins no version"
        return step.pinned_version.version, None
    version = latest.get(step.reduction_software_id)
    if version is None:
        return None, f"the software of step {step.name!r} has no latest version"
    return version, None
