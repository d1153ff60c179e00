"""Pipeline specs as code: YAML validated by pydantic, cross-checked as a whole.

A spec set is every object of every given file: software and versions, processing and
archive locations, data groupings and pipelines. ``validate_spec_files`` reports every
problem at once (file, object, field) and returns nothing half-valid; ``apply.py`` writes a
valid set to the ops-db.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_serializer,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from ccat_assets.grouping import validate_filter_rules, validate_group_by
from ccat_assets.opsdb.enums import LocationType, StorageType, TriggerType, VersionPolicy
from ccat_assets.specs.cron import cron_problem
from ccat_assets.specs.specfile import (
    SpecError,
    SpecProblem,
    did_you_mean,
    object_label,
    read_sections,
    validate_model,
)

#: Pipeline and step names become Dagster asset keys, group and job names, and directories.
IdentifierName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
]
#: Names of software, groupings, locations and configs: readable, path- and URL-safe.
ObjectName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
RESERVED_ENV_PREFIXES = ("WORKFLOW_", "APPTAINER", "SINGULARITY", "SLURM_")
_SEMVER = re.compile(r"^\d+(\.\d+){0,2}([-+][0-9A-Za-z.-]+)?$")


#: Position inside a field's value: mapping keys and list indices, as pydantic locates errors.
Loc = tuple[str | int, ...]
_T = TypeVar("_T")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
#: Problems reported per field; a list of a million NaNs needs one message, not a million.
MAX_STORAGE_PROBLEMS = 20


def _text_problem(text: str) -> str | None:
    """Why the ops-db cannot store ``text`` (a phrase after "text" or "key ..."), or None.

    PostgreSQL text and JSONB reject NUL; neither database driver can encode a lone UTF-16
    surrogate as UTF-8. PyYAML turns a JSON-style pair such as ``"\\ud83d\\ude00"`` into two
    lone surrogates, hence the hint.
    """
    if "\x00" in text:
        return "holds a NUL character (\\x00), which the ops-db cannot store"
    if found := _SURROGATE.search(text):
        return (f"holds a lone UTF-16 surrogate ({found.group()!r}), which is not valid "
                "Unicode; write the character itself or a \\U0001F600-style escape")
    return None


def _scalar_problem(value: object) -> str | None:
    """Why a JSON leaf cannot be stored, or None (str, finite number, bool, null)."""
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN is not storable; use null or a finite number"
        if math.isinf(value):
            sign = "-" if value < 0 else ""
            return f"{sign}infinity is not storable; use null or a finite number"
        return None
    if isinstance(value, str):
        problem = _text_problem(value)
        return f"text {problem}" if problem else None
    if isinstance(value, dt.date | dt.time):
        # YAML reads an unquoted 2024-05-01 as a date, which JSON has no type for.
        return (f"a {type(value).__name__} is not a JSON value; quote it "
                f"({str(value)!r}) to pass it as text")
    return (f"a {type(value).__name__} is not a JSON value (use text, numbers, true/false, "
            "null, lists and mappings)")


def _key_problem(key: object) -> str | None:
    """Why a mapping key cannot be stored, or None; non-text keys JSON writes as text."""
    if isinstance(key, str):
        problem = _text_problem(key)
        return f"key {key!r} {problem}" if problem else None
    if key is None or isinstance(key, bool | int | float):
        return None
    return f"key {key!r} is a {type(key).__name__}; JSON keys are text, quote it"


def storage_problems(value: Any) -> Iterator[tuple[Loc, str]]:
    """``(position, message)`` for every part of ``value`` the ops-db cannot store.

    Walks lists and mappings iteratively in document order, so deep nesting cannot exhaust the
    stack, and reports a container that contains itself (a YAML alias inside its own anchor),
    which no JSON writer can serialize. Spec models inside are skipped: they check their own
    fields.
    """
    stack: list[tuple[Any, Loc, frozenset[int]]] = [(value, (), frozenset())]
    while stack:
        node, at, ancestors = stack.pop()
        if isinstance(node, BaseModel):
            continue
        if not isinstance(node, dict | list | tuple):
            if problem := _scalar_problem(node):
                yield at, problem
            continue
        if id(node) in ancestors:
            yield at, "contains itself (a YAML alias inside its own anchor); JSON cannot hold it"
            continue
        inside = ancestors | {id(node)}
        children: list[tuple[Any, Loc, frozenset[int]]] = []
        if isinstance(node, dict):
            for key, child in node.items():
                if problem := _key_problem(key):
                    yield at, problem
                else:
                    children.append((child, (*at, str(key)), inside))
        else:
            children = [(child, (*at, i), inside) for i, child in enumerate(node)]
        stack.extend(reversed(children))


def _storable(value: _T) -> _T:
    """Reject what the ops-db's text and JSON columns cannot store, naming each position.

    Spec validation is the only gate before apply; without this, NaN, infinity, NUL and lone
    surrogates pass it and fail later as a database error naming no file or field. The nested
    ValidationError makes pydantic append each position to the field's own location, so the
    report reads ``...parameters.window[2]: NaN is not storable; ...``.
    """
    problems = list(storage_problems(value))
    if not problems:
        return value
    shown = problems[:MAX_STORAGE_PROBLEMS]
    if len(problems) > len(shown):
        shown.append(((), f"and {len(problems) - len(shown)} more values the ops-db cannot "
                          "store"))
    # The message goes in as context: a template would read braces in a quoted key as fields.
    details = [
        InitErrorDetails(type=PydanticCustomError("unstorable", "{reason}", {"reason": reason}),
                         loc=at, input=value)
        for at, reason in shown
    ]
    raise ValidationError.from_exception_data("unstorable", details)


#: Free text written to a text or JSON column of the ops-db.
StorableText = Annotated[str, AfterValidator(_storable)]
#: A number bound that must survive a JSON round trip: finite.
FiniteFloat = Annotated[float, AfterValidator(_storable)]
#: Arbitrary JSON from a spec (parameters, filter rules), checked all the way down.
JSONObject = Annotated[dict[str, Any], AfterValidator(_storable)]
JSONList = Annotated[list[Any], AfterValidator(_storable)]


def _valid_cron(value: str) -> str:
    """Dagster's rule, not croniter's: a trigger cron becomes a Dagster schedule at load."""
    if problem := cron_problem(value):
        raise ValueError(problem)
    return value


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ResourceSpec(_Spec):
    cpu: int = Field(default=1, ge=1, le=1024)
    memory_gb: float = Field(default=1.0, gt=0, le=16384)
    time_hours: float = Field(default=1.0, gt=0, le=720)
    gpu: int = Field(default=0, ge=0, le=64)


class ThresholdSpec(_Spec):
    min: FiniteFloat | None = None
    max: FiniteFloat | None = None
    #: A violated threshold is a WARN check unless it says ``error``.
    severity: Literal["warn", "error"] | None = None

    @model_serializer(mode="wrap")
    def _omit_default_severity(self, handler: Any) -> dict[str, Any]:
        # Configs without a severity keep the hash they had before the field existed, so
        # adding it reprocesses nothing.
        data = handler(self)
        if data.get("severity") is None:
            data.pop("severity", None)
        return data


class StepConfigSpec(_Spec):
    name: ObjectName | None = None
    parameters: JSONObject = Field(default_factory=dict)
    environment: dict[EnvName, StorableText] = Field(default_factory=dict)
    command: list[StorableText] = Field(min_length=1)
    resources: ResourceSpec = Field(default_factory=ResourceSpec)
    #: Checked for its keys; each threshold checks its own bounds.
    quality_thresholds: Annotated[dict[str, ThresholdSpec], AfterValidator(_storable)] = Field(
        default_factory=dict
    )

    @field_validator("environment")
    @classmethod
    def _no_reserved_env(cls, env: dict[str, str]) -> dict[str, str]:
        for key in env:
            if key.upper().startswith(RESERVED_ENV_PREFIXES):
                raise ValueError(f"{key!r} is reserved for the container contract and runtime")
        return env

    @field_validator("command")
    @classmethod
    def _argv_strings(cls, argv: list[str]) -> list[str]:
        if not all(argv):
            raise ValueError("command is an argv list of non-empty strings")
        return argv


class VersionSpec(_Spec):
    version: str
    image: StorableText = Field(min_length=1, max_length=512)
    digest: Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")] | None = None

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if not _SEMVER.match(value):
            raise ValueError(f"{value!r} is not a version like 1.2.3")
        return value


class SoftwareSpec(_Spec):
    name: ObjectName
    description: StorableText | None = None
    ghcr_url: StorableText | None = None
    github_repo_url: StorableText | None = None
    versions: list[VersionSpec] = Field(min_length=1)
    latest: str | None = None


class LocationSpec(_Spec):
    name: ObjectName
    type: LocationType
    storage_type: StorageType = StorageType.DISK
    base_path: StorableText = Field(min_length=1)
    host: StorableText | None = None
    site: StorableText | None = None


class GroupingSpec(_Spec):
    name: ObjectName
    description: StorableText | None = None
    filter_rules: JSONList = Field(default_factory=list)
    instrument_module: StorableText | None = None


class TriggerSpec(_Spec):
    type: TriggerType
    cron: str | None = None

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else _valid_cron(value)


class StepSpec(_Spec):
    name: IdentifierName
    description: StorableText | None = None
    software: ObjectName
    version_policy: VersionPolicy = VersionPolicy.COMPATIBLE
    pinned_version: str | None = None
    group_by: list[str] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)
    cooldown_seconds: int = Field(default=0, ge=0)
    schedule: str | None = None
    max_concurrent_runs: int | None = Field(default=None, ge=1)
    max_retries: int = Field(default=0, ge=0, le=100)
    batch_size: int = Field(default=1, ge=1, le=10_000)
    config: StepConfigSpec

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        return None if value is None else _valid_cron(value)


class PipelineSpec(_Spec):
    name: IdentifierName
    description: StorableText | None = None
    grouping: ObjectName
    processing_location: ObjectName
    trigger: TriggerSpec
    enabled: bool = True
    priority: int = Field(default=0, ge=-1000, le=1000)
    created_by: StorableText | None = None
    steps: list[StepSpec] = Field(min_length=1)
    #: Names of steps that failed validation (already reported); not part of the spec.
    invalid_step_names: tuple[str, ...] = Field(default=(), exclude=True)


SECTIONS: dict[str, type[_Spec]] = {
    "software": SoftwareSpec,
    "locations": LocationSpec,
    "groupings": GroupingSpec,
    "pipelines": PipelineSpec,
}


@dataclass
class KnownObjects:
    """Names already in the ops-db that a spec may refer to without redefining them."""

    software_versions: dict[str, set[str]] = field(default_factory=dict)
    groupings: set[str] = field(default_factory=set)
    processing_locations: set[str] = field(default_factory=set)
    other_locations: set[str] = field(default_factory=set)


@dataclass
class SpecSet:
    """A validated, self-consistent set of spec objects (with the file each came from)."""

    software: list[SoftwareSpec] = field(default_factory=list)
    locations: list[LocationSpec] = field(default_factory=list)
    groupings: list[GroupingSpec] = field(default_factory=list)
    pipelines: list[PipelineSpec] = field(default_factory=list)
    origin: dict[tuple[str, str], str] = field(default_factory=dict)


def validate_spec_files(
    paths: Sequence[Path], known: KnownObjects | None = None
) -> SpecSet:
    """Validate spec files as one set; raise :class:`SpecError` listing every problem."""
    known = known or KnownObjects()
    problems: list[SpecProblem] = []
    spec_set = SpecSet()
    where_of: dict[tuple[str, str], str] = {}
    for file, section, index, item in read_sections(paths, list(SECTIONS), problems):
        where = object_label(section, index, item)
        obj = validate_model(SECTIONS[section], item, file, where, problems)
        if obj is None and section == "pipelines":
            obj = _relaxed_pipeline(item)
        if obj is None:
            continue
        key = (section, obj.name)
        if key in spec_set.origin:
            problems.append(
                SpecProblem(file, where, f"duplicate name: also defined in {spec_set.origin[key]}")
            )
            continue
        spec_set.origin[key] = file
        where_of[key] = where
        getattr(spec_set, section).append(obj)
    _cross_check(spec_set, known, where_of, problems)
    if problems:
        raise SpecError(problems)
    return spec_set


def _relaxed_pipeline(item: Any) -> PipelineSpec | None:
    """The pipeline with its invalid steps left out (already reported), so that problems in
    the rest of it are reported in the same pass; None if the pipeline itself is invalid."""
    if not isinstance(item, dict) or not isinstance(item.get("steps"), list):
        return None
    valid_steps = []
    for step in item["steps"]:
        try:
            valid_steps.append(StepSpec.model_validate(step))
        except ValueError:
            continue
    if not valid_steps:
        return None
    try:
        relaxed = PipelineSpec.model_validate({**item, "steps": valid_steps})
    except ValueError:
        return None
    invalid = tuple(
        s.get("name") for s in item["steps"]
        if isinstance(s, dict) and isinstance(s.get("name"), str)
        and s.get("name") not in {v.name for v in valid_steps}
    )
    return relaxed.model_copy(update={"invalid_step_names": invalid})


def _cross_check(
    spec_set: SpecSet,
    known: KnownObjects,
    where_of: dict[tuple[str, str], str],
    problems: list[SpecProblem],
) -> None:
    def report(section: str, name: str, field_path: str, message: str) -> None:
        key = (section, name)
        problems.append(
            SpecProblem(spec_set.origin[key], f"{where_of[key]}.{field_path}", message)
        )

    versions = {name: set(v) for name, v in known.software_versions.items()}
    for sw in spec_set.software:
        seen: set[str] = set()
        for i, version in enumerate(sw.versions):
            if version.version in seen:
                report("software", sw.name, f"versions[{i}].version",
                       f"duplicate version {version.version!r}")
            seen.add(version.version)
        if sw.latest is not None and sw.latest not in seen:
            report("software", sw.name, "latest", f"{sw.latest!r} is not one of its versions")
        versions.setdefault(sw.name, set()).update(seen)

    for grouping in spec_set.groupings:
        for message in validate_filter_rules(grouping.filter_rules):
            path, _, text = message.partition(": ")
            report("groupings", grouping.name, path, text)

    groupings = known.groupings | {g.name for g in spec_set.groupings}
    processing = set(known.processing_locations) | {
        loc.name for loc in spec_set.locations if loc.type == LocationType.PROCESSING
    }
    all_locations = processing | known.other_locations | {loc.name for loc in spec_set.locations}
    for pipe in spec_set.pipelines:
        if pipe.grouping not in groupings:
            report("pipelines", pipe.name, "grouping",
                   f"unknown grouping {pipe.grouping!r}{did_you_mean(pipe.grouping, groupings)}")
        if pipe.processing_location not in processing:
            why = ("is not of type PROCESSING" if pipe.processing_location in all_locations
                   else "is not a known location")
            hint = did_you_mean(pipe.processing_location, processing)
            report("pipelines", pipe.name, "processing_location",
                   f"{pipe.processing_location!r} {why}{hint}")
        if pipe.trigger.type == TriggerType.CRON and not pipe.trigger.cron:
            report("pipelines", pipe.name, "trigger.cron",
                   "a CRON pipeline needs a cron expression")
        if pipe.trigger.type != TriggerType.CRON and pipe.trigger.cron:
            report("pipelines", pipe.name, "trigger.cron",
                   f"only CRON pipelines take a cron expression, not {pipe.trigger.type.value}")
        _check_steps(pipe, versions, lambda f, m, p=pipe: report("pipelines", p.name, f, m))


def _check_steps(pipe: PipelineSpec, versions: dict[str, set[str]], report: Any) -> None:
    names = [s.name for s in pipe.steps]
    reported_elsewhere = set(pipe.invalid_step_names)
    for i, step in enumerate(pipe.steps):
        at = f"steps[{step.name}]"
        if names.index(step.name) != i:
            report(f"{at}.name", f"duplicate step name {step.name!r}")
        if step.software not in versions:
            report(f"{at}.software",
                   f"unknown software {step.software!r}{did_you_mean(step.software, versions)}")
        elif step.pinned_version and step.pinned_version not in versions[step.software]:
            report(f"{at}.pinned_version",
                   f"{step.software} has no version {step.pinned_version!r} "
                   f"(known: {', '.join(sorted(versions[step.software]))})")
        if step.version_policy == VersionPolicy.EXACT and not step.pinned_version:
            report(f"{at}.pinned_version", "version_policy 'exact' needs a pinned_version")
        for message in validate_group_by(step.group_by):
            path, _, text = message.partition(": ")
            report(f"{at}.{path}", text)
        for j, dep in enumerate(step.depends_on):
            if dep == step.name:
                report(f"{at}.depends_on[{j}]", "a step cannot depend on itself")
            elif dep not in names and dep not in reported_elsewhere:
                report(f"{at}.depends_on[{j}]",
                       f"unknown step {dep!r}{did_you_mean(dep, names)}")
    cycle = find_cycle({s.name: [d for d in s.depends_on if d in names] for s in pipe.steps})
    if cycle:
        report("steps", f"depends_on has a cycle: {' -> '.join(cycle)}")


def find_cycle(edges: dict[str, list[str]]) -> list[str] | None:
    """A cycle in ``step -> depends_on`` edges as a closed path, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in edges:
        if node not in state and (found := visit(node)):
            return found
    return None


def topological_order(edges: dict[str, list[str]]) -> list[str]:
    """Steps with every dependency before its dependents, stable in declaration order."""
    order: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> None:
        if node in done:
            return
        done.add(node)
        for dep in edges.get(node, []):
            visit(dep)
        order.append(node)

    for node in edges:
        visit(node)
    return order
