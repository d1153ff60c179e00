"""``ccat-wm apply`` and ``ingest`` on both databases: idempotent, configs immutable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ccat_assets.cli import cli
from ccat_assets.cli.reload import Endpoint, endpoint
from ccat_assets.opsdb import (
    PhysicalCopy,
    Pipeline,
    RawDataFile,
    RawDataPackage,
    ReductionSoftwareVersion,
    ReductionStep,
    ReductionStepConfig,
)
from ccat_assets.opsdb.session import session_scope
from ccat_assets.settings import get_settings
from tests.factories import pipeline_spec, write_observations, write_spec

SCANS = [("scan-001", "NGC253", "CO43"), ("scan-002", "NGC253", "CO43"),
         ("scan-003", "ORION", "CII")]


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_apply_is_idempotent_and_keeps_old_configs(ccat_env: Path, tmp_path: Path) -> None:
    spec_file = write_spec(tmp_path / "p.yaml", pipeline_spec(tmp_path / "proc"))
    first = run("apply", "--no-reload", str(spec_file))
    assert "created   pipeline chai_test" in first
    second = run("apply", "--no-reload", str(spec_file))
    assert "nothing changed" in second
    with session_scope() as s:
        pipeline = s.scalar(sa.select(Pipeline))
        assert pipeline.created_by.username == "tester"
        grid = s.scalar(sa.select(ReductionStep).filter_by(name="grid"))
        assert [d.name for d in grid.depends_on] == ["calibrate"]
        old_config_id = s.scalar(sa.select(ReductionStep).filter_by(name="calibrate")
                                 ).reduction_step_config_id
        assert s.scalar(sa.select(ReductionSoftwareVersion)).is_latest

    changed = write_spec(tmp_path / "p2.yaml", pipeline_spec(tmp_path / "proc", tag="v2"))
    assert "updated   pipeline chai_test" in run("apply", "--no-reload", str(changed))
    with session_scope() as s:
        step = s.scalar(sa.select(ReductionStep).filter_by(name="calibrate"))
        assert step.reduction_step_config_id != old_config_id
        assert s.get(ReductionStepConfig, old_config_id) is not None
        assert step.config.config_parameters["tag"] == "v2"


def test_changing_a_registered_version_image_is_refused(ccat_env: Path, tmp_path: Path) -> None:
    spec = pipeline_spec(tmp_path / "proc")
    run("apply", "--no-reload", str(write_spec(tmp_path / "a.yaml", spec)))
    spec["software"][0]["versions"][0]["image"] = "ghcr.io/evil/other:1.0.0"
    result = CliRunner().invoke(cli, ["apply", "--no-reload",
                                      str(write_spec(tmp_path / "b.yaml", spec))])
    assert result.exit_code == 2
    assert "versions are immutable" in result.output


def test_ingest_registers_packages_files_and_copies(ccat_env: Path, tmp_path: Path) -> None:
    manifest = write_observations(tmp_path / "archive", SCANS)
    out = run("ingest", str(manifest))
    assert "created        3 raw_data_package" in out
    assert "unchanged      3 raw_data_package" in run("ingest", str(manifest))
    with session_scope() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(RawDataFile)) == 6
        package = s.scalar(sa.select(RawDataPackage).filter_by(name="scan-001-chai"))
        assert package.checksum.startswith("sha256:")
        assert package.executed_obs_unit.obs_unit.source.name == "NGC253"
        assert package.meta["observation"]["frequency_ghz"] == 461.04
        assert s.scalar(sa.select(sa.func.count()).select_from(PhysicalCopy)) == 3


def test_ingest_reports_bad_references_and_writes_nothing(ccat_env: Path, tmp_path: Path) -> None:
    manifest = write_observations(tmp_path / "archive", SCANS)
    text = manifest.read_text().replace("obs_unit: NGC253-CO43", "obs_unit: NGC253-CO34")
    text = text.replace("path: 2026-11-01/scan-003", "path: ../../etc")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    result = CliRunner().invoke(cli, ["ingest", str(bad)])
    assert result.exit_code == 2
    assert "raw_data_packages[scan-003-chai].path: '../../etc' climbs out" in result.output
    with session_scope() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(RawDataPackage)) == 0


def test_cli_help_lists_the_commands() -> None:
    out = run("--help")
    for command in ("db", "validate", "apply", "ingest", "pipelines", "grouping", "partitions"):
        assert command in out


def test_an_expanded_preset_applies_as_a_grouping(ccat_env: Path, tmp_path: Path) -> None:
    out = run("grouping", "expand", "source_line_instrument", "--name", "ngc253-co43",
              "--param", "source=NGC253", "--param", "line=CO43",
              "--param", "instrument_module=CHAI")
    spec_file = tmp_path / "grouping.yaml"
    spec_file.write_text(out)
    assert "created   grouping ngc253-co43" in run("apply", "--no-reload", str(spec_file))
    manifest = write_observations(tmp_path / "archive", SCANS)
    run("ingest", str(manifest))
    preview = run("grouping", "preview", "ngc253-co43", "--group-by", "executed_obs_unit",
                  "--json")
    assert [row["n_packages"] for row in json.loads(preview)] == [1, 1]


@pytest.mark.parametrize(("url", "expected"), [
    ("http://127.0.0.1:3000", Endpoint("127.0.0.1", 3000, False, "")),
    ("https://dagster.example.org", Endpoint("dagster.example.org", None, True, "")),
    ("https://dagster.example.org/ccat/", Endpoint("dagster.example.org", None, True, "/ccat")),
    ("http://host:8080/a/b", Endpoint("host", 8080, False, "/a/b")),
])
def test_webserver_url_is_parsed_not_split_by_hand(url: str, expected: Endpoint) -> None:
    assert endpoint(url) == expected


@pytest.mark.parametrize("url", ["ftp://host", "http://", "not a url", "http://host:notaport"])
def test_a_webserver_url_that_cannot_be_read_is_a_warning_after_apply(
        ccat_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """The ops-db is committed first; a bad URL, no webserver or a missing DAGSTER_HOME folder
    only warn, and the command succeeds."""
    monkeypatch.setenv("CCAT_WORKFLOW_MANAGER_DAGSTER_WEBSERVER_URL", url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "no-such-folder"))
    get_settings.cache_clear()
    spec_file = write_spec(tmp_path / "p.yaml", pipeline_spec(tmp_path / "processing"))
    result = CliRunner().invoke(cli, ["apply", str(spec_file)])
    assert result.exit_code == 0, result.output
    assert "created   pipeline chai_test" in result.output
    assert "warning: could not reload the code location" in result.output
    assert f"warning: DAGSTER_HOME={tmp_path / 'no-such-folder'} is not a folder" in result.output
