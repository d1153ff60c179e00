"""Malformed specs: each is rejected with a message naming file, object and field, and
nothing is written to the ops-db."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ccat_assets.cli import cli
from ccat_assets.opsdb import Base
from ccat_assets.opsdb.session import get_engine
from tests.factories import pipeline_spec, write_spec


def _set(spec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    node: Any = spec
    parts = path.split("/")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if value is _DELETE:
        del node[int(last) if last.isdigit() else last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return spec


_DELETE = object()
STEP0 = "pipelines/0/steps/0"
STEP1 = "pipelines/0/steps/1"

# (id, path to change, new value, text the error must contain)
CASES = [
    ("cycle", f"{STEP0}/depends_on", ["grid"], "steps: depends_on has a cycle: "),
    ("unknown-dependency", f"{STEP1}/depends_on", ["calibrat"],
     "steps[grid].depends_on[0]: unknown step 'calibrat'; did you mean 'calibrate'?"),
    ("self-dependency", f"{STEP1}/depends_on", ["grid"],
     "steps[grid].depends_on[0]: a step cannot depend on itself"),
    ("unknown-software", f"{STEP0}/software", "test-calibratoin",
     "steps[calibrate].software: unknown software 'test-calibratoin'; did you mean"),
    ("unknown-version", f"{STEP0}/pinned_version", "9.9.9",
     "steps[calibrate].pinned_version: test-calibration has no version '9.9.9'"),
    ("exact-without-pin", f"{STEP0}/version_policy", "exact",
     "steps[calibrate].pinned_version: version_policy 'exact' needs a pinned_version"),
    ("unknown-grouping", "pipelines/0/grouping", "chai-archivd",
     "pipelines[chai_test].grouping: unknown grouping 'chai-archivd'; did you mean"),
    ("bad-cron", "pipelines/0/trigger", {"type": "CRON", "cron": "61 * * * *"},
     "pipelines[chai_test].trigger.cron: "),
    # Dagster's own cron rule, not croniter's: six fields or 30 February passed croniter, then
    # the code location refused the schedule at load.
    ("six-field-cron", "pipelines/0/trigger", {"type": "CRON", "cron": "0 0 3 * * *"},
     "pipelines[chai_test].trigger.cron: Value error, '0 0 3 * * *' has 6 fields; Dagster "
     "schedules take standard cron expressions of 5 fields"),
    ("february-30-cron", "pipelines/0/trigger", {"type": "CRON", "cron": "0 0 30 2 *"},
     "pipelines[chai_test].trigger.cron: Value error, '0 0 30 2 *' is not a cron expression "
     "Dagster schedules accept"),
    ("six-field-step-schedule", f"{STEP0}/schedule", "0 0 3 * * *",
     "steps[0].schedule: Value error, '0 0 3 * * *' has 6 fields"),
    ("cron-missing", "pipelines/0/trigger", {"type": "CRON"},
     "pipelines[chai_test].trigger.cron: a CRON pipeline needs a cron expression"),
    ("bad-step-schedule", f"{STEP0}/schedule", "every day",
     "steps[0].schedule: Value error, 'every day' is not a valid cron expression"),
    ("negative-cooldown", f"{STEP0}/cooldown_seconds", -5,
     "steps[0].cooldown_seconds: Input should be greater than or equal to 0"),
    ("unknown-dimension", f"{STEP0}/group_by", ["executed_obs_unt"],
     "steps[calibrate].group_by[0]: "),
    ("duplicate-step", f"{STEP1}/name", "calibrate", "duplicate step name 'calibrate'"),
    ("unknown-field", f"{STEP0}/cooldown", 5,
     "steps[0].cooldown: unknown field 'cooldown'; did you mean 'cooldown_seconds'?"),
    ("bad-trigger-type", "pipelines/0/trigger", {"type": "SOMETIMES"},
     "pipelines[chai_test].trigger.type: Input should be 'CONTINUOUS', 'CRON' or 'MANUAL'"),
    ("pipeline-name-unsafe", "pipelines/0/name", "chai standing; rm -rf /",
     "pipelines[chai standing; rm -rf /].name: String should match pattern"),
    ("location-not-processing", "locations/0/type", "BUFFER",
     "processing_location: 'test-processing' is not of type PROCESSING"),
    ("missing-command", f"{STEP0}/config/command", _DELETE,
     "steps[0].config.command: required field is missing"),
    ("empty-argv-element", f"{STEP0}/config/command", ["python", ""],
     "steps[0].config.command: Value error, command is an argv list"),
    ("reserved-env", f"{STEP0}/config/environment", {"WORKFLOW_OUTPUT_DIR": "/etc"},
     "steps[0].config.environment: Value error, 'WORKFLOW_OUTPUT_DIR' is reserved"),
    ("negative-memory", f"{STEP0}/config/resources/memory_gb", -1,
     "steps[0].config.resources.memory_gb: Input should be greater than 0"),
    ("bad-filter-column", "groupings/0/filter_rules/0/column", "stat",
     "groupings[chai-archived].filter_rules[0].column: "),
    ("bad-filter-operator", "groupings/0/filter_rules/0/operator", "equals",
     "groupings[chai-archived].filter_rules[0].operator: "),
    ("bad-digest", "software/0/versions/0/digest", "md5:abc",
     "software[test-calibration].versions[0].digest: String should match pattern"),
    ("no-steps", "pipelines/0/steps", [], "pipelines[chai_test].steps: "),
    # Values the ops-db cannot store: rejected at their position before anything is written,
    # not by the database (PostgreSQL raises DataError for NaN and NUL in JSONB or text).
    ("nan-parameter", f"{STEP0}/config/parameters", {"window": [1, 2, float("nan")]},
     "steps[0].config.parameters.window[2]: NaN is not storable; use null or a finite number"),
    ("inf-threshold", f"{STEP0}/config/quality_thresholds", {"rms": {"max": float("inf")}},
     "steps[0].config.quality_thresholds.rms.max: infinity is not storable"),
    ("nul-environment", f"{STEP0}/config/environment", {"MODE": "a\x00b"},
     "steps[0].config.environment.MODE: text holds a NUL character"),
    ("nul-parameter-key", f"{STEP0}/config/parameters", {"fit": {"k\x00": 1}},
     "steps[0].config.parameters.fit: key 'k\\x00' holds a NUL character"),
    ("surrogate-description", "pipelines/0/description", "map \ud83d\ude00",
     "pipelines[chai_test].description: text holds a lone UTF-16 surrogate ('\\ud83d')"),
    ("nul-filter-value", "groupings/0/filter_rules", [
        {"table": "Source", "column": "name", "operator": "in", "value": ["NGC253", "a\x00"]}],
     "groupings[chai-archived].filter_rules[0].value[1]: text holds a NUL character"),
]


def _counts() -> dict[str, int]:
    with get_engine().connect() as conn:
        return {name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                for name, table in Base.metadata.tables.items()}


@pytest.mark.parametrize(("case", "path", "value", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_malformed_spec_is_rejected_naming_the_field(
    case: str, path: str, value: Any, expected: str, ccat_env: Path, tmp_path: Path,
) -> None:
    spec = _set(pipeline_spec(tmp_path / "processing"), path, value)
    spec_file = write_spec(tmp_path / f"{case}.yaml", spec)
    before = _counts()

    result = CliRunner().invoke(cli, ["apply", "--no-reload", str(spec_file)])

    assert result.exit_code == 2, result.output
    assert f"{spec_file}: " in result.output
    assert expected in result.output, result.output
    assert "nothing was written" in result.output
    assert _counts() == before


def test_every_problem_is_reported_at_once(ccat_env: Path, tmp_path: Path) -> None:
    spec = _set(pipeline_spec(tmp_path / "p"), f"{STEP0}/cooldown_seconds", -1)
    spec = _set(spec, "pipelines/0/grouping", "nope")
    spec = _set(spec, f"{STEP1}/depends_on", ["missing"])
    result = CliRunner().invoke(cli, ["validate", str(write_spec(tmp_path / "s.yaml", spec))])
    assert result.exit_code == 2
    assert "cooldown_seconds" in result.output
    assert "unknown grouping 'nope'" in result.output
    assert "steps[grid].depends_on[0]: unknown step 'missing'" in result.output
    assert result.output.count("error: ") == 3


def test_invalid_yaml_and_unknown_section(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipelines: [\n  - name: x\n")
    odd = tmp_path / "odd.yaml"
    odd.write_text("pipeline: []\n")
    result = CliRunner().invoke(cli, ["validate", str(bad), str(odd)])
    assert result.exit_code == 2
    assert f"{bad}: invalid YAML at line" in result.output
    assert f"{odd}: pipeline: unknown section; did you mean 'pipelines'?" in result.output


def test_duplicate_names_across_files(tmp_path: Path) -> None:
    spec = pipeline_spec(tmp_path / "p")
    a = write_spec(tmp_path / "a.yaml", spec)
    b = write_spec(tmp_path / "b.yaml", {"software": spec["software"][:1]})
    result = CliRunner().invoke(cli, ["validate", str(a), str(b)])
    assert result.exit_code == 2
    assert f"{b}: software[test-calibration]: duplicate name: also defined in {a}" in result.output
