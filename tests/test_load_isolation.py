"""No pipeline can take the code location down.

A spec Dagster would refuse is refused by ``ccat-wm validate`` and ``apply`` (at its field,
nothing written). A pipeline that reaches the ops-db anyway (a row written by another tool, a
rule of a later Dagster) is left out at load: the other pipelines, the raw data assets and the
shared sensors load, and the failure shows in ``ccat-wm pipelines``, in the code server's log
and as a placeholder asset in the Dagster UI.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ccat_assets.cli import cli
from ccat_assets.codelocation import location as location_module
from ccat_assets.codelocation.location import PipelineParts, assemble
from ccat_assets.dagster_face import catalog as catalog_module
from ccat_assets.dagster_face.catalog import PipelineDef, pipeline_def_from_spec
from ccat_assets.definitions import load_definitions
from ccat_assets.opsdb import Base, Pipeline
from ccat_assets.opsdb.session import get_engine, session_scope
from ccat_assets.settings import get_settings
from ccat_assets.specs.spec import validate_spec_files
from tests.factories import pipeline_spec, write_spec

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SIX_FIELDS = "0 0 3 * * *"
PLACEHOLDER = dg.AssetKey(["ccat", "chai_cron", "not_loaded"])


def two_pipelines(tmp_path: Path) -> dict[str, Any]:
    """``chai_good`` (CONTINUOUS) and ``chai_cron`` (CRON at a cron Dagster accepts)."""
    spec = pipeline_spec(tmp_path / "proc", name="chai_good")
    spec["pipelines"][0]["trigger"] = {"type": "CONTINUOUS"}
    cron = copy.deepcopy(pipeline_spec(tmp_path / "proc", name="chai_cron")["pipelines"][0])
    cron["trigger"] = {"type": "CRON", "cron": "0 3 * * *"}
    spec["pipelines"].append(cron)
    return spec


def colliding(tmp_path: Path) -> dict[str, Any]:
    """Pipeline ``p`` with step ``x__y`` and pipeline ``p__x`` with step ``y``: both build the
    job ``p__x__y__batch`` and the op ``p__x__y__checks``."""
    spec = pipeline_spec(tmp_path / "proc", name="p")
    first = spec["pipelines"][0]
    first["steps"] = first["steps"][:1]
    first["steps"][0].update(name="x__y", batch_size=4)
    second = copy.deepcopy(first)
    second["name"] = "p__x"
    second["steps"][0]["name"] = "y"
    spec["pipelines"].append(second)
    return spec


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def counts() -> dict[str, int]:
    with get_engine().connect() as conn:
        return {name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                for name, table in Base.metadata.tables.items()}


def break_cron(name: str, cron: str = SIX_FIELDS) -> None:
    """What another tool writing the ops-db directly might do; no validation on the way."""
    with session_scope() as session:
        row = session.scalar(sa.select(Pipeline).where(Pipeline.name == name))
        row.trigger_config = {"cron": cron}


def asset_keys(defs: dg.Definitions) -> set[str]:
    return {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}


# --- refused before anything is written -------------------------------------------------


def test_six_field_cron_is_refused_by_validate_and_apply(ccat_env: Path, tmp_path: Path) -> None:
    spec = pipeline_spec(tmp_path / "proc")
    spec["pipelines"][0]["trigger"] = {"type": "CRON", "cron": SIX_FIELDS}
    spec_file = write_spec(tmp_path / "six.yaml", spec)
    before = counts()

    for command in (["validate"], ["apply", "--no-reload"]):
        result = invoke(*command, str(spec_file))
        assert result.exit_code == 2, result.output
        assert (f"{spec_file}: pipelines[chai_test].trigger.cron: Value error, "
                f"'{SIX_FIELDS}' has 6 fields") in result.output
        assert "nothing was written" in result.output
    assert counts() == before


def test_what_dagster_refuses_beyond_our_rules_is_refused_at_the_field(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-memory build is the net under the explicit rules: with the cron rule switched
    off, Dagster's own refusal still stops validate, mapped to the field."""
    monkeypatch.setattr("ccat_assets.specs.spec.cron_problem", lambda expression: None)
    spec = pipeline_spec(tmp_path / "proc")
    spec["pipelines"][0]["trigger"] = {"type": "CRON", "cron": SIX_FIELDS}
    result = invoke("validate", str(write_spec(tmp_path / "six.yaml", spec)))
    assert result.exit_code == 2, result.output
    assert ("pipelines[chai_test].trigger.cron: Dagster would not load this pipeline: "
            "DagsterInvalidDefinitionError: Found invalid cron schedule") in result.output


def test_names_two_pipelines_would_share_are_refused(tmp_path: Path) -> None:
    result = invoke("validate", str(write_spec(tmp_path / "c.yaml", colliding(tmp_path))))
    assert result.exit_code == 2, result.output
    assert "pipelines[p__x].name: Dagster would not load this pipeline: Dagster " in result.output
    assert "is also built by pipeline 'p'" in result.output
    assert "pipelines[p]" not in result.output


def test_apply_refuses_a_pipeline_taking_the_names_of_one_in_the_ops_db(
        ccat_env: Path, tmp_path: Path) -> None:
    spec = colliding(tmp_path)
    first = write_spec(tmp_path / "p.yaml", {**spec, "pipelines": spec["pipelines"][:1]})
    second = write_spec(tmp_path / "px.yaml", {**spec, "pipelines": spec["pipelines"][1:]})
    assert invoke("apply", "--no-reload", str(first)).exit_code == 0
    before = counts()

    result = invoke("apply", "--no-reload", str(second))

    assert result.exit_code == 2, result.output
    assert f"{second}: pipelines[p__x].name: Dagster would not load" in result.output
    assert counts() == before


# --- left out at load, the rest loads ----------------------------------------------------


def test_a_bad_row_leaves_the_other_pipelines_loading(
        ccat_env: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec_file = write_spec(tmp_path / "two.yaml", two_pipelines(tmp_path))
    assert invoke("apply", "--no-reload", str(spec_file)).exit_code == 0
    break_cron("chai_cron")

    with caplog.at_level(logging.ERROR, logger="ccat_assets.definitions"):
        defs = load_definitions()

    repo = defs.get_repository_def()
    keys = asset_keys(defs)
    assert {"ccat/chai_good/calibrate", "ccat/chai_good/grid",
            "ccat/grouping/chai-archived"} <= keys
    assert {k for k in keys if k.startswith("ccat/chai_cron/")} == {"ccat/chai_cron/not_loaded"}
    sensors = {s.name for s in repo.sensor_defs}
    assert {"chai_good__gap_sensor", "ccat_reconcile_sensor", "ccat_run_failure_sensor"} <= sensors
    assert not repo.schedule_defs
    assert not [j for j in repo.job_names if j.startswith("chai_cron")]
    assert "chai_good__executed_obs_unit" in repo.job_names
    node = defs.resolve_asset_graph().get(PLACEHOLDER)
    assert not node.is_executable
    assert "Pipeline `chai_cron` is not loaded" in (node.description or "")
    assert SIX_FIELDS in (node.description or "")
    assert "spec field `trigger.cron`" in (node.description or "")
    assert any("pipeline chai_cron is not loaded [trigger.cron]" in r.getMessage()
               and SIX_FIELDS in r.getMessage() for r in caplog.records)

    listing = invoke("pipelines")
    assert listing.exit_code == 0, listing.output
    lines = listing.output.splitlines()
    cron_line = next(i for i, line in enumerate(lines) if line.startswith("chai_cron "))
    assert " not_loaded " in lines[cron_line]
    assert "not loaded [trigger.cron]: " in lines[cron_line + 1]
    assert f"'{SIX_FIELDS}'" in lines[cron_line + 1]
    assert " loaded " in next(line for line in lines if line.startswith("chai_good "))
    rows = {r["name"]: r for r in json.loads(invoke("pipelines", "--json").output)}
    assert rows["chai_good"]["status"] == "loaded" and rows["chai_good"]["reason"] is None
    assert rows["chai_cron"]["status"] == "not_loaded"
    assert rows["chai_cron"]["field"] == "trigger.cron"
    assert "Found invalid cron schedule" in rows["chai_cron"]["reason"]

    # Applying a corrected spec repairs the row, and the pipeline loads again. (The same spec
    # again would not: apply compares the spec's hash, which the direct write did not change.)
    fixed = two_pipelines(tmp_path)
    fixed["pipelines"][1]["trigger"]["cron"] = "0 4 * * *"
    fixed_file = write_spec(tmp_path / "fixed.yaml", fixed)
    assert "updated   pipeline chai_cron" in invoke("apply", "--no-reload", str(fixed_file)).output
    repaired = load_definitions()
    assert "ccat/chai_cron/calibrate" in asset_keys(repaired)
    assert "ccat/chai_cron/not_loaded" not in asset_keys(repaired)
    assert repaired.get_repository_def().schedule_defs


def test_an_unreadable_row_leaves_the_others_loading(
        ccat_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A row the catalog cannot even read (here: made to raise) is left out the same way."""
    assert invoke("apply", "--no-reload",
                  str(write_spec(tmp_path / "two.yaml", two_pipelines(tmp_path)))).exit_code == 0
    real = catalog_module._pipeline_def

    def fragile(row: Pipeline, locations: dict[int, str], latest: dict[int, str]) -> PipelineDef:
        if row.name == "chai_cron":
            raise KeyError("depends on a step that is not in the pipeline")
        return real(row, locations, latest)

    monkeypatch.setattr(catalog_module, "_pipeline_def", fragile)
    keys = asset_keys(load_definitions())
    assert "ccat/chai_good/grid" in keys and "ccat/chai_cron/not_loaded" in keys
    rows = {r["name"]: r for r in json.loads(invoke("pipelines", "--json").output)}
    assert rows["chai_cron"]["status"] == "not_loaded"
    assert "KeyError" in rows["chai_cron"]["reason"]


def _catalog(tmp_path: Path, spec: dict[str, Any]) -> list[PipelineDef]:
    spec_set = validate_spec_files([write_spec(tmp_path / "catalog.yaml", spec)])
    return [pipeline_def_from_spec(p) for p in spec_set.pipelines]


def test_names_taken_twice_leave_the_later_pipeline_out(tmp_path: Path) -> None:
    result = assemble(_catalog(tmp_path, colliding(tmp_path)), get_settings())
    assert result.loaded == ("p",)
    [item] = result.not_loaded
    assert item.pipeline == "p__x" and item.field == "name"
    assert "is also built by pipeline 'p'" in item.reason
    assert "ccat/p/x__y" in asset_keys(result.definitions)


def test_a_grouping_name_dagster_refuses_leaves_only_its_pipeline_out(tmp_path: Path) -> None:
    good, cron = _catalog(tmp_path, two_pipelines(tmp_path))
    bad = dataclasses.replace(cron, grouping="no spaces allowed")
    result = assemble([good, bad], get_settings())
    assert [(n.pipeline, n.field) for n in result.not_loaded] == [("chai_cron", "grouping")]
    keys = asset_keys(result.definitions)
    assert "ccat/chai_good/grid" in keys and "ccat/chai_cron/not_loaded" in keys
    assert "ccat/grouping/no spaces allowed" not in keys


def needing_a_missing_resource(pipeline: str) -> Callable[..., PipelineParts]:
    """``build_parts`` with one more asset in ``pipeline`` that needs a resource nobody
    provides: a refusal Dagster raises only when it resolves the location (as a rule of a
    later Dagster might)."""
    real = location_module.build_parts

    def build(p: PipelineDef, settings: Any) -> PipelineParts:
        parts = real(p, settings)
        if p.name != pipeline:
            return parts

        @dg.asset(key=["ccat", p.name, "needs_missing"], required_resource_keys={"absent"})
        def _needs() -> None: ...

        return dataclasses.replace(parts, assets=(*parts.assets, _needs))

    return build


def test_a_refusal_found_only_when_resolving_is_narrowed_to_its_pipeline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The slow path: the assembled location does not resolve, each pipeline is resolved on
    its own, and only the one that fails alone is left out."""
    monkeypatch.setattr(location_module, "build_parts", needing_a_missing_resource("chai_cron"))
    result = assemble(_catalog(tmp_path, two_pipelines(tmp_path)), get_settings())
    assert result.loaded == ("chai_good",)
    [item] = result.not_loaded
    assert item.pipeline == "chai_cron" and item.field is None
    assert "resource with key 'absent'" in item.reason
    keys = asset_keys(result.definitions)
    assert "ccat/chai_good/grid" in keys and "ccat/chai_cron/not_loaded" in keys
    assert not {k for k in keys if k.startswith("ccat/chai_cron/") and "not_loaded" not in k}


# --- Dagster's own CLI ----------------------------------------------------------------------


def test_dagster_definitions_validate_accepts_the_location_with_a_broken_pipeline(
        ccat_env: Path, tmp_path: Path) -> None:
    assert invoke("apply", "--no-reload",
                  str(write_spec(tmp_path / "two.yaml", two_pipelines(tmp_path)))).exit_code == 0
    break_cron("chai_cron")
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home),
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([str(BIN / "dagster"), "definitions", "validate", "-w",
                             "workspace.yaml"], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "pipeline chai_cron is not loaded [trigger.cron]" in result.stdout + result.stderr
