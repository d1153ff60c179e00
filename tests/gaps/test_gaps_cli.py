"""``ccat-wm gaps``: what would fire now and why every other pair waits."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
from click.testing import CliRunner

from ccat_assets.cli import cli
from ccat_assets.definitions import load_definitions
from tests.gaps.gapkit import SCANS, apply_pipeline, ccat, ingest, map_key, materialize, scan_key


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


def test_at_answers_what_would_fire_then(served_env: Path, tmp_path: Path) -> None:
    """A one-hour cooldown: now the scans wait with ``wake_at``; ``--at`` a second after it
    they fire; a time that is no time is refused naming the option."""
    apply_pipeline(tmp_path, calibrate={"cooldown_seconds": 3600})
    ingest(tmp_path, SCANS)
    now = [r for r in json.loads(ccat("gaps", "chai_test", "--json"))
           if r["step"] == "calibrate"]
    assert {(r["decision"], r["reason"]) for r in now} == {("wait", "cooldown")}
    wake = max(dt.datetime.fromisoformat(r["wake_at"]) for r in now)
    later = json.loads(ccat("gaps", "chai_test", "--json", "--at",
                            (wake + dt.timedelta(seconds=1)).isoformat()))
    assert {r["decision"] for r in later if r["step"] == "calibrate"} == {"fire"}
    naive = (wake + dt.timedelta(seconds=1)).replace(tzinfo=None).isoformat()
    assert json.loads(ccat("gaps", "chai_test", "--json", "--at", naive)) == later  # UTC
    bad = CliRunner().invoke(cli, ["gaps", "chai_test", "--at", "tomorrow"])
    assert bad.exit_code == 2 and "--at" in bad.output and "ISO 8601" in bad.output
