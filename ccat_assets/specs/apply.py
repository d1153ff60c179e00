"""Write a validated spec set to the ops-db: an idempotent upsert in one transaction.

Applying the same files twice writes nothing the second time. A changed step config makes a
new immutable config row and keeps the old one, because runs reference what they ran with.
Software versions are immutable too: a version's image cannot silently change under the runs
that used it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ccat_assets.hashing import content_hash
from ccat_assets.opsdb import (
    DataGrouping,
    DataLocation,
    ExecutedReductionStep,
    InstrumentModule,
    LocationType,
    Pipeline,
    ReductionSoftware,
    ReductionSoftwareVersion,
    ReductionStep,
    ReductionStepConfig,
    User,
)
from ccat_assets.settings import get_settings
from ccat_assets.specs.spec import (
    KnownObjects,
    PipelineSpec,
    SoftwareSpec,
    SpecSet,
    StepConfigSpec,
    topological_order,
)
from ccat_assets.specs.specfile import SpecError, SpecProblem


@dataclass
class ApplyReport:
    """What an apply did, object by object: ``created``, ``updated`` or ``unchanged``."""

    changes: list[tuple[str, str, str]] = field(default_factory=list)

    def record(self, kind: str, name: str, what: str) -> None:
        self.changes.append((kind, name, what))

    @property
    def wrote_anything(self) -> bool:
        return any(what != "unchanged" for _, _, what in self.changes)

    def lines(self) -> list[str]:
        return [f"{what:9} {kind} {name}" for kind, name, what in self.changes]


def known_objects(session: Session) -> KnownObjects:
    """The names in the ops-db that specs may reference without redefining them."""
    known = KnownObjects()
    rows = session.execute(
        sa.select(ReductionSoftware.name, ReductionSoftwareVersion.version).join(
            ReductionSoftwareVersion, isouter=True
        )
    )
    for name, version in rows:
        known.software_versions.setdefault(name, set())
        if version:
            known.software_versions[name].add(version)
    known.groupings = set(session.scalars(sa.select(DataGrouping.name)))
    for name, kind in session.execute(sa.select(DataLocation.name, DataLocation.location_type)):
        target = known.processing_locations if kind == LocationType.PROCESSING else (
            known.other_locations
        )
        target.add(name)
    return known


def config_hash(config: StepConfigSpec) -> str:
    return content_hash(config.model_dump(mode="json", exclude={"name"}))


def apply_spec_set(session: Session, spec_set: SpecSet) -> ApplyReport:
    """Upsert every object of ``spec_set``; the caller commits (or rolls back on error)."""
    report = ApplyReport()
    for loc in spec_set.locations:
        _apply_location(session, loc, report)
    for sw in spec_set.software:
        _apply_software(session, sw, report)
    for grouping in spec_set.groupings:
        _apply_grouping(session, grouping, report)
    session.flush()
    for pipe in spec_set.pipelines:
        _apply_pipeline(session, pipe, report, spec_set.origin[("pipelines", pipe.name)])
    return report


def _upsert_fields(row: object, values: dict[str, object]) -> bool:
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


def resolve_base_path(base_path: str) -> str:
    """A relative location path is relative to CCAT_WORKFLOW_MANAGER_HOME, so example specs
    carry no machine paths."""
    path = Path(base_path).expanduser()
    return str(path if path.is_absolute() else get_settings().home / path)


def _apply_location(session: Session, spec, report: ApplyReport) -> None:
    values = {
        "location_type": spec.type,
        "storage_type": spec.storage_type,
        "base_path": resolve_base_path(spec.base_path),
        "host": spec.host,
        "site": spec.site,
    }
    row = session.scalar(sa.select(DataLocation).filter_by(name=spec.name))
    if row is None:
        session.add(DataLocation(name=spec.name, **values))
        report.record("location", spec.name, "created")
    else:
        report.record("location", spec.name, "updated" if _upsert_fields(row, values) else
                      "unchanged")


def _apply_software(session: Session, spec: SoftwareSpec, report: ApplyReport) -> None:
    values = {
        "description": spec.description,
        "ghcr_url": spec.ghcr_url,
        "github_repo_url": spec.github_repo_url,
    }
    row = session.scalar(sa.select(ReductionSoftware).filter_by(name=spec.name))
    created = row is None
    if row is None:
        row = ReductionSoftware(name=spec.name, **values)
        session.add(row)
        session.flush()
        changed = True
    else:
        changed = _upsert_fields(row, values)
    existing = {v.version: v for v in row.versions}
    for version in spec.versions:
        have = existing.get(version.version)
        if have is None:
            have = ReductionSoftwareVersion(
                software=row, version=version.version, image_ref=version.image,
                digest=version.digest, is_latest=False,
            )
            session.add(have)
            existing[version.version] = have
            changed = True
        elif (have.image_ref, have.digest) != (version.image, version.digest):
            origin = f"software[{spec.name}].versions[{version.version}]"
            raise SpecError([SpecProblem(
                "ops-db", origin,
                f"version {version.version} is registered with image {have.image_ref} "
                f"(digest {have.digest}); versions are immutable, add a new version instead",
            )])
    latest = spec.latest or max(existing, key=_version_key)
    for name, version_row in existing.items():
        if version_row.is_latest != (name == latest):
            version_row.is_latest = name == latest
            changed = True
    report.record("software", spec.name,
                  "created" if created else "updated" if changed else "unchanged")


def _version_key(version: str) -> tuple:
    core, _, pre = version.partition("-")
    numbers = tuple(int(x) for x in core.split("+")[0].split(".") if x.isdigit())
    return numbers + (0,) * (3 - len(numbers)), pre == "", pre


def _apply_grouping(session: Session, spec, report: ApplyReport) -> None:
    module_id = None
    if spec.instrument_module:
        module = session.scalar(sa.select(InstrumentModule).filter_by(name=spec.instrument_module))
        if module is None:
            module = InstrumentModule(name=spec.instrument_module)
            session.add(module)
            session.flush()
        module_id = module.id
    values = {
        "description": spec.description,
        "filter_rules": spec.filter_rules,
        "instrument_module_id": module_id,
    }
    row = session.scalar(sa.select(DataGrouping).filter_by(name=spec.name))
    if row is None:
        session.add(DataGrouping(name=spec.name, **values))
        report.record("grouping", spec.name, "created")
    else:
        report.record("grouping", spec.name, "updated" if _upsert_fields(row, values) else
                      "unchanged")


def _config_row(session: Session, step_name: str, config: StepConfigSpec) -> ReductionStepConfig:
    name = config.name or step_name
    digest = config_hash(config)
    row = session.scalar(
        sa.select(ReductionStepConfig).filter_by(name=name, content_hash=digest)
    )
    if row is None:
        row = ReductionStepConfig(
            name=name,
            config_parameters=config.parameters,
            environment_variables=config.environment,
            command_template=config.command,
            resource_requirements=config.resources.model_dump(),
            quality_thresholds={k: v.model_dump() for k, v in config.quality_thresholds.items()},
            content_hash=digest,
        )
        session.add(row)
        session.flush()
    return row


def _apply_pipeline(session: Session, spec: PipelineSpec, report: ApplyReport, file: str) -> None:
    spec_hash = content_hash(spec.model_dump(mode="json"))
    row = session.scalar(sa.select(Pipeline).filter_by(name=spec.name))
    if row is not None and row.spec_hash == spec_hash:
        report.record("pipeline", spec.name, "unchanged")
        return
    grouping = session.scalar(sa.select(DataGrouping).filter_by(name=spec.grouping))
    location = session.scalar(sa.select(DataLocation).filter_by(name=spec.processing_location))
    user = None
    if spec.created_by:
        user = session.scalar(sa.select(User).filter_by(username=spec.created_by))
        if user is None:
            user = User(username=spec.created_by)
            session.add(user)
    values = {
        "description": spec.description,
        "data_grouping_id": grouping.id,
        "processing_location_id": location.id,
        "trigger_type": spec.trigger.type,
        "trigger_config": {"cron": spec.trigger.cron} if spec.trigger.cron else {},
        "enabled": spec.enabled,
        "priority": spec.priority,
        "created_by": user,
        "spec_hash": spec_hash,
    }
    created = row is None
    if row is None:
        row = Pipeline(name=spec.name, **values)
        session.add(row)
        session.flush()
    else:
        _upsert_fields(row, values)
    _apply_steps(session, row, spec, file)
    report.record("pipeline", spec.name, "created" if created else "updated")


def _apply_steps(session: Session, pipeline: Pipeline, spec: PipelineSpec, file: str) -> None:
    by_name = {s.name: s for s in pipeline.steps}
    order = topological_order({s.name: list(s.depends_on) for s in spec.steps})
    for removed in set(by_name) - {s.name for s in spec.steps}:
        has_runs = session.scalar(
            sa.select(sa.func.count()).select_from(ExecutedReductionStep)
            .filter_by(reduction_step_id=by_name[removed].id)
        )
        if has_runs:
            raise SpecError([SpecProblem(
                file, f"pipelines[{spec.name}].steps",
                f"step {removed!r} has runs in the ops-db and cannot be removed; "
                "disable the pipeline or keep the step",
            )])
        session.delete(by_name.pop(removed))
    session.flush()
    for step_spec in spec.steps:
        software = session.scalar(sa.select(ReductionSoftware).filter_by(name=step_spec.software))
        pinned = None
        if step_spec.pinned_version:
            pinned = session.scalar(
                sa.select(ReductionSoftwareVersion).filter_by(
                    reduction_software_id=software.id, version=step_spec.pinned_version
                )
            )
        config = _config_row(session, step_spec.name, step_spec.config)
        values = {
            "description": step_spec.description,
            "step_order": order.index(step_spec.name),
            "reduction_software_id": software.id,
            "reduction_step_config_id": config.id,
            "group_by": list(step_spec.group_by),
            "cooldown_seconds": step_spec.cooldown_seconds,
            "schedule": step_spec.schedule,
            "max_concurrent_runs": step_spec.max_concurrent_runs,
            "pinned_version_id": pinned.id if pinned else None,
            "version_policy": step_spec.version_policy,
            "max_retries": step_spec.max_retries,
            "batch_size": step_spec.batch_size,
        }
        row = by_name.get(step_spec.name)
        if row is None:
            row = ReductionStep(pipeline_id=pipeline.id, name=step_spec.name, **values)
            session.add(row)
            by_name[step_spec.name] = row
        else:
            _upsert_fields(row, values)
    session.flush()
    for step_spec in spec.steps:
        wanted = [by_name[d] for d in step_spec.depends_on]
        row = by_name[step_spec.name]
        if [d.id for d in row.depends_on] != [d.id for d in wanted]:
            row.depends_on = wanted
