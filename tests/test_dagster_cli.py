"""The example pipeline through Dagster's own CLI, as a user would run it: `dagster
definitions validate` accepts the code location, and `dagster asset materialize` of one
partition of the first step records a COMPLETED run and its products."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from ccat_assets.opsdb import DataProductType, ExecutedReductionStep, RunStatus
from ccat_assets.opsdb.session import session_scope

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(args: list[str], env: dict[str, str], timeout: int = 240) -> str:
    result = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout, check=False)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.integration
def test_example_first_step_materializes_from_the_dagster_cli(
    ccat_env: Path, tmp_path: Path
) -> None:
    if shutil.which("chai-generate", path=str(BIN)) is None:
        pytest.fail("the CHAI examples are not installed (pip install -e examples/chai)")
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home),
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    archive = ccat_env / "archive"
    _run([str(BIN / "chai-generate"), "--out", str(archive), "--night", "2026-11-01",
          "--sources", "NGC253", "--lines", "CO43", "--scans-per-target", "2",
          "--positions-per-scan", "4", "--channels", "128"], env)
    _run([str(BIN / "ccat-wm"), "apply", "--no-reload", "examples/chai/pipelines.yaml"], env)
    manifests = sorted(archive.rglob("ingest.yaml"))
    _run([str(BIN / "ccat-wm"), "ingest", *map(str, manifests)], env)
    _run([str(BIN / "ccat-wm"), "partitions", "sync", "chai_standing"], env)
    _run([str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"], env)
    preview = json.loads(_run([str(BIN / "ccat-wm"), "grouping", "preview", "chai-archived",
                               "--group-by", "executed_obs_unit", "--json"], env))
    key = preview[0]["key"]
    _run([str(BIN / "dagster"), "asset", "materialize", "-m", "ccat_assets.definitions",
          "--select", "ccat/chai_standing/calibrate", "--partition", key], env)

    with session_scope() as s:
        run = s.scalar(sa.select(ExecutedReductionStep))
        assert run.status == RunStatus.COMPLETED, run.error_message
        assert run.sub_group_key == key
        types = [p.data_product_type for p in run.products]
        assert types.count(DataProductType.INTERMEDIATE) >= 1
        assert all(Path(run.run_dir, p.relative_path).is_file() for p in run.products)
