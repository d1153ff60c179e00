"""Register observations and their RawDataPackages from a YAML/JSON manifest.

This stands in for data-transfer writing the ops-db: the demo and the tests use it. Every
object is upserted by name, so ingesting the same manifest twice changes nothing, and a
package whose files changed gets a new checksum and ``updated_at`` (which gap evaluation sees
as new input).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.orm import Session

from ccat_assets.hashing import file_checksum, package_checksum
from ccat_assets.opsdb import (
    DataLocation,
    ExecutedObsUnit,
    InstrumentModule,
    ObservingProgram,
    ObsUnit,
    PackageState,
    PhysicalCopy,
    PhysicalCopyStatus,
    RawDataFile,
    RawDataPackage,
    Source,
)
from ccat_assets.paths import UnsafePath, safe_relative_path
from ccat_assets.specs.apply import resolve_base_path
from ccat_assets.specs.spec import LocationSpec
from ccat_assets.specs.specfile import (
    SpecError,
    SpecProblem,
    did_you_mean,
    object_label,
    read_sections,
    validate_model,
)

Name = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Checksum = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
FILE_NAMESPACE = uuid.UUID("6f1d7c1e-3c1b-4f55-9b8e-ccad0c0ffee0")


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProgramItem(_Item):
    name: Name
    short_name: str | None = None
    description: str | None = None


class ModuleItem(_Item):
    name: Name
    instrument: str | None = None
    description: str | None = None


class SourceItem(_Item):
    name: Name
    source_type: str = "fixed"
    ra_deg: float | None = Field(default=None, ge=0, lt=360)
    dec_deg: float | None = Field(default=None, ge=-90, le=90)


class ObsUnitItem(_Item):
    name: Name
    source: str | None = None
    line_id: str | None = None
    observing_program: str | None = None
    instrument_module: str | None = None
    obs_mode: str | None = None


class ScanItem(_Item):
    name: Name
    obs_unit: str
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    status: str = "success"
    metadata: dict[str, Any] = Field(default_factory=dict)


class FileItem(_Item):
    path: str
    size_bytes: int = Field(ge=0)
    checksum: Checksum
    file_type: str | None = None
    id: uuid.UUID | None = None


class PackageItem(_Item):
    name: Name
    executed_obs_unit: str
    instrument_module: str | None = None
    state: PackageState = PackageState.ARCHIVED
    location: str
    path: str
    checksum: Checksum | None = None
    size_bytes: int | None = Field(default=None, ge=0)
    metadata: dict[str, Any] = Field(default_factory=dict)
    files: list[FileItem] | None = None


SECTIONS: dict[str, type[BaseModel]] = {
    "locations": LocationSpec,
    "observing_programs": ProgramItem,
    "instrument_modules": ModuleItem,
    "sources": SourceItem,
    "obs_units": ObsUnitItem,
    "executed_obs_units": ScanItem,
    "raw_data_packages": PackageItem,
}


@dataclass
class IngestReport:
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, what: str) -> None:
        bucket = getattr(self, what)
        bucket[kind] = bucket.get(kind, 0) + 1

    def lines(self) -> list[str]:
        out = []
        for what in ("created", "updated", "unchanged"):
            for kind, n in sorted(getattr(self, what).items()):
                out.append(f"{what:9} {n:6d} {kind}")
        return out


@dataclass
class Manifest:
    items: dict[str, list[tuple[str, str, Any]]] = field(default_factory=dict)


def read_manifests(paths: Sequence[Path]) -> Manifest:
    """Parse and validate manifests; raise :class:`SpecError` listing every problem."""
    problems: list[SpecProblem] = []
    manifest = Manifest({section: [] for section in SECTIONS})
    seen: dict[tuple[str, str], str] = {}
    for file, section, index, item in read_sections(paths, list(SECTIONS), problems):
        where = object_label(section, index, item)
        obj = validate_model(SECTIONS[section], item, file, where, problems)
        if obj is None:
            continue
        key = (section, obj.name)
        if key in seen:
            problems.append(SpecProblem(file, where, f"duplicate name: also in {seen[key]}"))
            continue
        seen[key] = file
        if isinstance(obj, PackageItem):
            problems.extend(_check_package_paths(obj, file, where))
        manifest.items[section].append((file, where, obj))
    if problems:
        raise SpecError(problems)
    return manifest


def _check_package_paths(item: PackageItem, file: str, where: str) -> list[SpecProblem]:
    problems = []
    try:
        safe_relative_path(item.path)
    except UnsafePath as exc:
        problems.append(SpecProblem(file, f"{where}.path", str(exc)))
    for i, f in enumerate(item.files or []):
        try:
            safe_relative_path(f.path)
        except UnsafePath as exc:
            problems.append(SpecProblem(file, f"{where}.files[{i}].path", str(exc)))
    return problems


class _Resolver:
    """Name -> row lookups across what the manifest defines and what the ops-db has."""

    def __init__(self, session: Session, problems: list[SpecProblem]):
        self.session = session
        self.problems = problems
        self.cache: dict[tuple[type, str], Any] = {}

    def get(self, model: type, name: str | None, file: str, where: str) -> Any:
        if name is None:
            return None
        key = (model, name)
        if key not in self.cache:
            self.cache[key] = self.session.scalar(sa.select(model).filter_by(name=name))
        row = self.cache[key]
        if row is None:
            names = self.session.scalars(sa.select(model.name).limit(2000))
            self.problems.append(SpecProblem(
                file, where,
                f"unknown {model.__tablename__} {name!r}{did_you_mean(name, names)}",
            ))
        return row

    def put(self, row: Any) -> None:
        self.cache[(type(row), row.name)] = row


def ingest(session: Session, manifest: Manifest) -> IngestReport:
    """Upsert everything in ``manifest``; raise SpecError (caller rolls back) on bad references."""
    report = IngestReport()
    problems: list[SpecProblem] = []
    resolve = _Resolver(session, problems)

    def upsert(model: type, kind: str, name: str, values: dict[str, Any]) -> Any:
        row = session.scalar(sa.select(model).filter_by(name=name))
        if row is None:
            row = model(name=name, **values)
            session.add(row)
            report.count(kind, "created")
        else:
            changed = [k for k, v in values.items() if getattr(row, k) != v]
            for k in changed:
                setattr(row, k, values[k])
            report.count(kind, "updated" if changed else "unchanged")
        session.flush()
        resolve.put(row)
        return row

    for _file, _where, loc in manifest.items["locations"]:
        upsert(DataLocation, "location", loc.name, {
            "location_type": loc.type, "storage_type": loc.storage_type,
            "base_path": resolve_base_path(loc.base_path), "host": loc.host, "site": loc.site,
        })
    for _file, _where, item in manifest.items["observing_programs"]:
        upsert(ObservingProgram, "observing_program", item.name,
               item.model_dump(exclude={"name"}))
    for _file, _where, item in manifest.items["instrument_modules"]:
        upsert(InstrumentModule, "instrument_module", item.name, item.model_dump(exclude={"name"}))
    for _file, _where, item in manifest.items["sources"]:
        upsert(Source, "source", item.name, item.model_dump(exclude={"name"}))
    for file, where, item in manifest.items["obs_units"]:
        upsert(ObsUnit, "obs_unit", item.name, {
            "source_id": _id(resolve.get(Source, item.source, file, f"{where}.source")),
            "line_id": item.line_id,
            "observing_program_id": _id(resolve.get(
                ObservingProgram, item.observing_program, file, f"{where}.observing_program")),
            "instrument_module_id": _id(resolve.get(
                InstrumentModule, item.instrument_module, file, f"{where}.instrument_module")),
            "obs_mode": item.obs_mode,
        })
    for file, where, item in manifest.items["executed_obs_units"]:
        obs_unit = resolve.get(ObsUnit, item.obs_unit, file, f"{where}.obs_unit")
        if obs_unit is None:
            continue
        upsert(ExecutedObsUnit, "executed_obs_unit", item.name, {
            "obs_unit_id": obs_unit.id,
            "start_time": _utc(item.start_time), "end_time": _utc(item.end_time),
            "status": item.status, "meta": item.metadata,
        })
    for file, where, item in manifest.items["raw_data_packages"]:
        _ingest_package(session, resolve, report, item, file, where)
    if problems:
        raise SpecError(problems)
    return report


def _ingest_package(
    session: Session, resolve: _Resolver, report: IngestReport, item: PackageItem, file: str,
    where: str,
) -> None:
    scan = resolve.get(ExecutedObsUnit, item.executed_obs_unit, file, f"{where}.executed_obs_unit")
    module = resolve.get(InstrumentModule, item.instrument_module, file,
                         f"{where}.instrument_module")
    location = resolve.get(DataLocation, item.location, file, f"{where}.location")
    if scan is None or location is None or (item.instrument_module and module is None):
        return
    package_dir = Path(location.base_path) / item.path
    files = item.files
    if files is None:
        files = _scan_files(package_dir, resolve.problems, file, where)
        if files is None:
            return
    checksum = package_checksum([(f.path, f.checksum) for f in files])
    if item.checksum and item.checksum != checksum:
        resolve.problems.append(SpecProblem(
            file, f"{where}.checksum",
            f"{item.checksum} does not match its files' checksum {checksum}",
        ))
        return
    values = {
        "executed_obs_unit_id": scan.id,
        "instrument_module_id": _id(module),
        "state": item.state,
        "checksum": checksum,
        "size_bytes": item.size_bytes if item.size_bytes is not None else sum(
            f.size_bytes for f in files),
        "relative_path": item.path,
        "meta": item.metadata,
    }
    row = session.scalar(sa.select(RawDataPackage).filter_by(name=item.name))
    if row is None:
        row = RawDataPackage(name=item.name, **values)
        session.add(row)
        session.flush()
        report.count("raw_data_package", "created")
    else:
        changed = [k for k, v in values.items() if getattr(row, k) != v]
        for k in changed:
            setattr(row, k, values[k])
        report.count("raw_data_package", "updated" if changed else "unchanged")
        if not changed:
            return
        session.execute(sa.delete(RawDataFile).filter_by(raw_data_package_id=row.id))
        session.flush()
    for f in files:
        file_id = f.id or uuid.uuid5(FILE_NAMESPACE, f"{item.name}/{f.path}")
        session.add(RawDataFile(
            id=str(file_id), raw_data_package_id=row.id, relative_path=f.path,
            size_bytes=f.size_bytes, checksum=f.checksum, file_type=f.file_type,
        ))
    copy = session.scalar(sa.select(PhysicalCopy).filter_by(
        raw_data_package_id=row.id, data_location_id=location.id))
    if copy is None:
        session.add(PhysicalCopy(
            raw_data_package_id=row.id, data_location_id=location.id,
            status=PhysicalCopyStatus.PRESENT, path=item.path, checksum=checksum,
        ))
    else:
        copy.path, copy.checksum, copy.status = item.path, checksum, PhysicalCopyStatus.PRESENT
    session.flush()


def _scan_files(
    package_dir: Path, problems: list[SpecProblem], file: str, where: str
) -> list[FileItem] | None:
    if not package_dir.is_dir():
        problems.append(SpecProblem(file, f"{where}.path",
                                    f"no 'files' listed and {package_dir} is not a directory"))
        return None
    return [
        FileItem(
            path=p.relative_to(package_dir).as_posix(), size_bytes=p.stat().st_size,
            checksum=file_checksum(p), file_type=p.suffix.lstrip(".").lower() or None,
        )
        for p in sorted(package_dir.rglob("*"))
        if p.is_file() and not p.is_symlink()
    ]


def _id(row: Any) -> int | None:
    return None if row is None else row.id


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
