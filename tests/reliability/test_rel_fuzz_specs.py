"""Pipeline specs, tried systematically: valid specs mutated at random (any field replaced by a
random value of any type, deleted, or joined by an unknown field), random YAML documents and
random bytes. ``validate_spec_files`` either accepts the set or raises ``SpecError`` whose
every problem names the file and, for a field it rejects, the field; nothing else escapes.
Names it accepts are safe as directory names: a run directory built from them stays inside
the pipelines directory; values it accepts are storable in the ops-db (finite numbers, text
without NUL or lone surrogates), and each unstorable value is reported at its own position.
Deterministic (``derandomize``), so CI sees the same examples."""

from __future__ import annotations

import copy
import datetime as dt
import enum
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccat_assets.results.contract import RunLayout
from ccat_assets.specs.spec import validate_spec_files
from ccat_assets.specs.specfile import SpecError
from tests.factories import pipeline_spec
from tests.reliability.strategies import TEXT, VALUE

FUZZ = settings(max_examples=150, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
BASE = pipeline_spec(Path("/srv/ccat/processing"))


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    children = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for key, child in children:
        out += _paths(child, (*prefix, key))
    return out


PATHS = _paths(BASE)


def _mutate(spec: dict, path: tuple, op: str, value: Any, extra_key: str) -> dict:
    spec = copy.deepcopy(spec)
    parent = spec
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if op == "replace":
        parent[last] = value
    elif op == "delete":
        del parent[last]
    elif op == "unknown_field" and isinstance(parent, dict):
        parent[extra_key] = value
    elif op == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[last]))
    else:
        parent[last] = value
    return spec


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "pipeline.yaml"


def _check(path: Path) -> Any:
    """Accepted or a well-formed SpecError; any other exception fails the test."""
    try:
        return validate_spec_files([path])
    except SpecError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.message.strip(), problem
            assert str(problem).startswith(str(path)), problem
        return error


def _names_are_safe(spec_set: Any) -> None:
    base = Path("/srv/ccat/pipelines")
    for pipe in spec_set.pipelines:
        for step in pipe.steps:
            root = RunLayout.for_run(base, pipe.name, "all", step.name, 1).root
            assert root.is_relative_to(base) and ".." not in root.parts


@FUZZ
@given(path=st.sampled_from(PATHS), op=st.sampled_from(["replace", "delete", "unknown_field",
                                                        "duplicate"]),
       value=VALUE, extra_key=TEXT)
def test_mutated_specs_are_accepted_or_rejected_cleanly(spec_file: Path, path, op, value,
                                                        extra_key) -> None:
    spec_file.write_text(yaml.safe_dump(_mutate(BASE, path, op, value, extra_key),
                                         allow_unicode=True), encoding="utf-8")
    result = _check(spec_file)
    if not isinstance(result, SpecError):
        _names_are_safe(result)
        assert _all_storable(result)


@FUZZ
@given(document=VALUE)
def test_random_yaml_documents_are_accepted_or_rejected_cleanly(spec_file: Path,
                                                                document) -> None:
    spec_file.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    _check(spec_file)


@settings(max_examples=60, derandomize=True, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_are_rejected_with_a_file_level_error(spec_file: Path, data) -> None:
    spec_file.write_bytes(data)
    assert isinstance(_check(spec_file), SpecError)


STEP = ("pipelines", 0, "steps", 0)
CONFIG = (*STEP, "config")
FIELD_CASES = [
    (("pipelines", 0, "name"), "../evil", "name"),
    (("pipelines", 0, "name"), "a b", "name"),
    (("pipelines", 0, "priority"), "high", "priority"),
    (("pipelines", 0, "priority"), 10**6, "priority"),
    (("pipelines", 0, "trigger"), {"type": "CRON"}, "trigger.cron"),
    (("pipelines", 0, "trigger"), {"type": "CRON", "cron": "61 * * * *"}, "trigger.cron"),
    (("pipelines", 0, "trigger", "type"), "SOMETIMES", "trigger.type"),
    (("pipelines", 0, "grouping"), "no-such-grouping", "grouping"),
    ((*STEP, "name"), "step/../x", "name"),
    ((*STEP, "cooldown_seconds"), -1, "cooldown_seconds"),
    ((*STEP, "max_retries"), 101, "max_retries"),
    ((*STEP, "group_by"), ["no_such_dimension"], "group_by"),
    ((*STEP, "group_by"), "executed_obs_unit", "group_by"),
    ((*STEP, "schedule"), "every day", "schedule"),
    ((*STEP, "depends_on"), ["ghost"], "depends_on"),
    ((*STEP, "version_policy"), "exact", "pinned_version"),
    ((*CONFIG, "command"), [], "command"),
    ((*CONFIG, "command"), "python reduce.py", "command"),
    ((*CONFIG, "command"), ["python", "a\x00b"], "command"),
    ((*CONFIG, "resources", "cpu"), 0, "cpu"),
    ((*CONFIG, "resources", "memory_gb"), "lots", "memory_gb"),
    ((*CONFIG, "resources", "time_hours"), 10**9, "time_hours"),
    ((*CONFIG, "environment"), {"WORKFLOW_STEP": "x"}, "environment"),
    ((*CONFIG, "environment"), {"1BAD": "x"}, "environment"),
    ((*CONFIG, "environment"), {"OK": 5}, "environment"),
    ((*CONFIG, "parameters"), ["not", "a", "mapping"], "parameters"),
    ((*CONFIG, "quality_thresholds"), {"q": {"min": "low"}}, "quality_thresholds"),
    (("software", 0, "versions", 0, "version"), "latest", "version"),
    (("software", 0, "versions", 0, "digest"), "md5:abc", "digest"),
    (("locations", 0, "type"), "CLOUD", "type"),
    (("locations", 0, "name"), "a/b", "name"),
    (("groupings", 0, "filter_rules"), [{"table": "Nope", "column": "x", "operator": "eq",
                                         "value": 1}], "filter_rules[0].table"),
    (("groupings", 0, "filter_rules"), "state = archived", "filter_rules"),
    (("groupings", 0, "filter_rules"), [{"any": []}], "filter_rules[0].any"),
]


@pytest.mark.parametrize(("path", "value", "field"), FIELD_CASES,
                         ids=[f"{'.'.join(map(str, c[0]))}={c[1]!r}"[:60] for c in FIELD_CASES])
def test_a_bad_field_is_rejected_naming_the_field(spec_file: Path, path, value, field) -> None:
    spec_file.write_text(yaml.safe_dump(_mutate(BASE, path, "replace", value, "")),
                         encoding="utf-8")
    error = _check(spec_file)
    assert isinstance(error, SpecError), f"{path} = {value!r} was accepted"
    assert any(field in problem.where for problem in error.problems), str(error)


def _storable(value: Any) -> bool:
    """JSON that PostgreSQL's JSONB and text columns accept: finite numbers, text that encodes
    as UTF-8 (no lone surrogates) and holds no NUL, nothing JSON has no type for. Written
    independently of the validator it checks."""

    def enum_value(obj: object) -> object:
        if isinstance(obj, enum.Enum):
            return obj.value
        raise TypeError(f"{type(obj).__name__} is not JSON")

    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, default=enum_value)
        text.encode("utf-8")
    except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
        return False
    # An escaped NUL, not a literal backslash followed by "u0000".
    return re.search(r"(?<!\\)(?:\\\\)*\\u0000", text) is None


def _all_storable(spec_set: Any) -> bool:
    return all(_storable(obj.model_dump())
               for section in (spec_set.software, spec_set.locations, spec_set.groupings,
                               spec_set.pipelines)
               for obj in section)


def test_the_storability_oracle_tells_storable_from_unstorable() -> None:
    """The oracle below must be able to say no, or the properties using it prove nothing."""
    assert _storable({"a": [1, 2.5, None, True, "x\\u0000y", "🙂", {"1": 10**30}]})
    for bad in (math.nan, math.inf, -math.inf, "a\x00b", "\ud800", dt.date(2024, 5, 1)):
        assert not _storable({"a": [bad]}), bad


POSITION_CASES = [
    # (path replaced, value, position the problem must name, words its message must hold)
    ((*CONFIG, "parameters"), {"window": [1, 2, math.nan]},
     "steps[0].config.parameters.window[2]", "NaN is not storable"),
    ((*CONFIG, "parameters"), {"fit": {"bounds": [0, math.inf]}},
     "steps[0].config.parameters.fit.bounds[1]", "infinity is not storable"),
    ((*CONFIG, "parameters"), {"fit": {"low": -math.inf}},
     "steps[0].config.parameters.fit.low", "-infinity is not storable"),
    ((*CONFIG, "parameters"), {"labels": ["ok", {"name": "a\x00b"}]},
     "steps[0].config.parameters.labels[1].name", "NUL character"),
    ((*CONFIG, "parameters"), {"name": "x\ud800y"},
     "steps[0].config.parameters.name", "lone UTF-16 surrogate"),
    ((*CONFIG, "parameters"), {"emoji": "\ud83d\ude00"},
     "steps[0].config.parameters.emoji", "lone UTF-16 surrogate"),
    ((*CONFIG, "parameters"), {"nested": {"k\x00": 1}},
     "steps[0].config.parameters.nested", "key 'k\\x00' holds a NUL character"),
    ((*CONFIG, "parameters"), {"start": dt.date(2024, 5, 1)},
     "steps[0].config.parameters.start", "quote it ('2024-05-01')"),
    ((*CONFIG, "environment"), {"MODE": "a\x00b"},
     "steps[0].config.environment.MODE", "NUL character"),
    ((*CONFIG, "environment"), {"MODE": "\udfff"},
     "steps[0].config.environment.MODE", "lone UTF-16 surrogate"),
    ((*CONFIG, "command"), ["python", "\ud800"], "steps[0].config.command[1]", "surrogate"),
    ((*CONFIG, "quality_thresholds"), {"rms": {"min": math.nan}},
     "steps[0].config.quality_thresholds.rms.min", "NaN is not storable"),
    ((*CONFIG, "quality_thresholds"), {"rms": {"max": -math.inf}},
     "steps[0].config.quality_thresholds.rms.max", "-infinity is not storable"),
    ((*CONFIG, "quality_thresholds"), {"rms\x00": {"max": 1.0}},
     "steps[0].config.quality_thresholds", "key 'rms\\x00' holds a NUL"),
    ((*CONFIG, "resources", "memory_gb"), math.nan, "steps[0].config.resources.memory_gb", ""),
    ((*CONFIG, "resources", "time_hours"), math.inf, "steps[0].config.resources.time_hours",
     ""),
    ((*STEP, "description"), "a\x00b", "steps[0].description", "NUL character"),
    (("pipelines", 0, "description"), "\ud800", "pipelines[chai_test].description",
     "surrogate"),
    (("pipelines", 0, "created_by"), "a\x00b", "pipelines[chai_test].created_by", "NUL"),
    (("groupings", 0, "filter_rules"), [{"any": [{"table": "Source", "column": "name",
                                                  "operator": "eq", "value": "NGC\ud800"}]}],
     "groupings[chai-archived].filter_rules[0].any[0].value", "surrogate"),
    (("groupings", 0, "filter_rules"), [{"table": "RawDataPackage", "column": "metadata",
                                         "json_path": "observation.frequency_ghz",
                                         "operator": "in", "value": [461.04, math.inf]}],
     "groupings[chai-archived].filter_rules[0].value[1]", "infinity is not storable"),
    (("groupings", 0, "description"), "a\x00b", "groupings[chai-archived].description", "NUL"),
    (("software", 0, "description"), "\ud800", "software[test-calibration].description",
     "surrogate"),
    (("software", 0, "versions", 0, "image"), "ghcr.io/x\x00",
     "software[test-calibration].versions[0].image", "NUL"),
    (("locations", 0, "base_path"), "/srv/a\x00b", "locations[test-processing].base_path",
     "NUL"),
    (("locations", 0, "host"), "\ud800", "locations[test-processing].host", "surrogate"),
]


@pytest.mark.parametrize(("path", "value", "position", "words"), POSITION_CASES,
                         ids=[f"{c[2]}={c[1]!r}"[:70] for c in POSITION_CASES])
def test_unstorable_values_are_rejected_at_their_position(spec_file: Path, path, value,
                                                          position, words) -> None:
    spec_file.write_text(yaml.safe_dump(_mutate(BASE, path, "replace", value, "")),
                         encoding="utf-8")
    error = _check(spec_file)
    assert isinstance(error, SpecError), f"{position} = {value!r} was accepted"
    # The words start the message or follow a space: "infinity" must not match "-infinity".
    said = re.compile(r"(?:^|\s)" + re.escape(words))
    assert any(p.where.endswith(position) and said.search(p.message)
               for p in error.problems), str(error).encode("unicode_escape").decode()


def test_a_self_referencing_parameter_is_rejected(spec_file: Path) -> None:
    loop: dict[str, Any] = {}
    loop["again"] = loop
    spec = _mutate(BASE, (*CONFIG, "parameters"), "replace", {"loop": loop}, "")
    spec_file.write_text(yaml.safe_dump(spec), encoding="utf-8")
    assert "&" in spec_file.read_text()  # the file holds a YAML alias inside its anchor
    error = _check(spec_file)
    assert isinstance(error, SpecError)
    assert any(p.where.endswith("parameters.loop.again") and "contains itself" in p.message
               for p in error.problems), str(error)


def test_many_unstorable_values_are_summarized(spec_file: Path) -> None:
    spec = _mutate(BASE, (*CONFIG, "parameters"), "replace", {"v": [math.nan] * 50}, "")
    spec_file.write_text(yaml.safe_dump(spec), encoding="utf-8")
    error = _check(spec_file)
    assert isinstance(error, SpecError)
    assert len(error.problems) == 21
    assert error.problems[-1].message == "and 30 more values the ops-db cannot store"
    assert error.problems[-1].where.endswith("steps[0].config.parameters")


def test_storable_json_is_accepted_unchanged(spec_file: Path) -> None:
    """No over-reach: big integers, non-text keys, astral characters, nulls and empty
    containers are storable, and validation keeps them as written."""
    params = {"tag": "v1", "big": 2**70, "neg": -(2**70), "orders": {1: "linear", 2.5: "x"},
              "emoji": "🙂 日本語", "empty": [[], {}], "none": None, "flag": False,
              "small": 5e-324, "huge": 1.7976931348623157e308, "backslash": "\\u0000"}
    spec = _mutate(BASE, (*CONFIG, "parameters"), "replace", params, "")
    spec_file.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    result = _check(spec_file)
    assert not isinstance(result, SpecError), str(result)
    assert result.pipelines[0].steps[0].config.parameters == params
    assert _all_storable(result)
