"""``ccat-wm gaps``: what would fire now and why every other pair waits."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
from click.testing import CliRunner

from ccat_assets.cli import cli
from ccat_assets.definitions import load_definitions
from tests.gaps.gapkit import ccat, map_key, materialize, scan_key


def test_table_by_step(continuous: Path) -> None:
    with dg.instance_for_test() as instance:
        materialize(load_definitions(), instance, "calibrate", scan_key("scan-001"))
    out = ccat("gaps", "chai_test")
    lines = out.splitlines()
    assert lines[0].startswith("calibrate (executed_obs_unit): 3 sub-group(s), 2 would fire")
    assert not any(scan_key("scan-001") in line for line in lines)  # up to date: hidden
    assert any(line.split()[:3] == ["fire", "no_completed_run", scan_key("scan-002")]
               for line in lines)
    grid = next(line for line in lines if map_key("NGC253", "CO43") in line)
    assert grid.split()[:2] == ["wait", "upstream_incomplete"]
    assert "waiting_on=1" in grid and "gap=no_completed_run" in grid
    assert scan_key("scan-001") in ccat("gaps", "chai_test", "--all")


def test_json(continuous: Path) -> None:
    rows = json.loads(ccat("gaps", "chai_test", "--json"))
    assert len(rows) == 3 + 2
    first = rows[0]
    assert first["decision"] == "fire" and first["reason"] == "no_completed_run"
    assert first["fingerprint"].startswith("sha256:")


def test_unknown_pipeline(continuous: Path) -> None:
    result = CliRunner().invoke(cli, ["gaps", "nope"])
    assert result.exit_code == 1
    assert "no pipeline 'nope'" in result.output
