"""Containers written for the seed's CCAT contract run unchanged: a program that knows only
the seed's paths and environment (no manifest) reads its upstream step's intermediates at
``/workflow/workspace/<upstream step>/``, read-only, on the local backend and on the real
loopback SLURM cluster.

Apptainer cannot be installed here: bubblewrap runs the real ``apptainer exec`` argv with
exactly its binds (``tests/execution/bwrap_stand_in.py``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from ccat_assets.execution.execute import ExecutionServices, RunOutcome, execute_partition
from ccat_assets.execution.jobs import Backend
from ccat_assets.grouping import subgroup_key
from ccat_assets.opsdb import RunStatus
from ccat_assets.settings import get_settings
from resources.apptainer import HostRuntime
from resources.backends.local import LocalBackend
from resources.backends.slurm import SlurmBackend
from resources.staging import make_stager
from tests.conftest import require_service
from tests.execution.bwrap_stand_in import BwrapStandInRuntime
from tests.execution.conftest import apply_and_ingest
from tests.factories import pipeline_spec

SEED_PROGRAM = ["/usr/bin/python3", "/opt/ccat/seed_step.py"]
SCANS = [("scan-001", "NGC253", "CO43"), ("scan-002", "NGC253", "CO43")]


def _scan(name: str) -> str:
    return subgroup_key(["executed_obs_unit"], [name])


def _seed_pipeline(tmp_path: Path, grid_grain: list[str]) -> dict[str, Any]:
    """calibrate (per scan) -> grid, both the seed program; grid told its upstream by the
    step config's environment, as the seed passes it."""
    spec = pipeline_spec(tmp_path / "processing", final_grain=grid_grain)
    calibrate, grid = spec["pipelines"][0]["steps"]
    calibrate["config"]["command"] = list(SEED_PROGRAM)
    grid["config"]["command"] = list(SEED_PROGRAM)
    grid["config"]["environment"] = {"UPSTREAM_STEP": "calibrate"}
    return spec


def _bwrap(tmp_path: Path) -> BwrapStandInRuntime:
    require_service(shutil.which("bwrap") is not None,
                    "bubblewrap (installed by scripts/services/install.sh)")
    return BwrapStandInRuntime(tmp_path / "sif-cache")


def _run(services: ExecutionServices, step: str, key: str) -> RunOutcome:
    outcome = execute_partition(services, pipeline_name="chai_test", step_name=step,
                                sub_group_key=key, dagster_run_id=None)
    assert outcome.status == RunStatus.COMPLETED
    return outcome


def _seen(outcome: RunOutcome) -> dict[str, Any]:
    return json.loads((Path(outcome.run_dir) / "output/science/seen.json").read_text())


def _assert_read_only(seen: dict[str, Any]) -> None:
    assert seen["create_in_upstream"] == "EROFS"
    assert seen["modify_upstream"] == "EROFS"
    assert seen["remove_upstream"] == "EROFS"
    assert seen["write_own_workspace"] == "allowed"
    assert seen["cwd"] == "/workflow/workspace/grid"


def _two_steps_same_grain(services: ExecutionServices,
                          runtime: BwrapStandInRuntime) -> list[RunOutcome]:
    first = _run(services, "calibrate", _scan("scan-001"))
    intermediate = Path(first.run_dir) / "workspace/calibrate/calibrated.dat"
    written = intermediate.read_bytes()
    assert written.startswith(b"calibrate executed_obs_unit=scan-001\n")

    second = _run(services, "grid", _scan("scan-001"))

    seen = _seen(second)
    # the seed's path, exactly as the first step wrote it: no sub-group folder, no manifest
    assert seen["files"] == {"calibrated.dat": written.decode()}
    _assert_read_only(seen)
    assert intermediate.read_bytes() == written  # the upstream product is intact
    [product] = [p for p in first.products if p["type"] == "INTERMEDIATE"]
    assert product["checksum"] == "sha256:" + hashlib.sha256(written).hexdigest()
    run_dir = Path(second.run_dir)
    bind = f"{run_dir}/workspace/calibrate:/workflow/workspace/calibrate:ro"
    argv = runtime.seen_argv
    assert bind in argv
    assert argv.index(bind) > argv.index(f"{run_dir}/workspace:/workflow/workspace")
    # the project's own paths and manifest are kept
    manifest = json.loads((run_dir / "config/manifest.json").read_text())
    assert [p["path"] for p in manifest["inputs"]["products"]] == [
        f"/workflow/input/products/calibrate/{_scan('scan-001')}/workspace/calibrate/"
        "calibrated.dat"]
    return [first, second]


def test_seed_program_reads_upstream_workspace_read_only_on_the_local_backend(
    ccat_env: Path, tmp_path: Path, make_services,
) -> None:
    apply_and_ingest(tmp_path, _seed_pipeline(tmp_path, ["executed_obs_unit"]), SCANS[:1])
    runtime = _bwrap(tmp_path)
    backend: Backend = LocalBackend(get_settings().jobs_dir)
    _two_steps_same_grain(make_services(backend, runtime, make_stager), runtime)


@pytest.mark.integration
def test_seed_program_reads_upstream_workspace_read_only_on_slurm(
    ccat_env: Path, tmp_path: Path, slurm_settings_env: None, make_services,
) -> None:
    apply_and_ingest(tmp_path, _seed_pipeline(tmp_path, ["executed_obs_unit"]), SCANS[:1])
    runtime = _bwrap(tmp_path)
    services = make_services(SlurmBackend.from_settings(get_settings()), runtime, make_stager)
    outcomes = _two_steps_same_grain(services, runtime)
    assert [(o.backend, o.job_id.isdigit()) for o in outcomes] == [("slurm", True)] * 2


def test_a_coarser_step_sees_one_folder_per_upstream_sub_group(
    ccat_env: Path, tmp_path: Path, make_services,
) -> None:
    """Two scans feed one source+line: every scan's calibrated.dat (same name) is kept,
    each under its sub-group key, read-only."""
    apply_and_ingest(tmp_path, _seed_pipeline(tmp_path, ["source", "line"]), SCANS)
    runtime = _bwrap(tmp_path)
    services = make_services(LocalBackend(get_settings().jobs_dir), runtime, make_stager)
    written = {}
    for scan, _source, _line in SCANS:
        first = _run(services, "calibrate", _scan(scan))
        written[_scan(scan)] = (Path(first.run_dir) / "workspace/calibrate/calibrated.dat"
                                ).read_text()

    seen = _seen(_run(services, "grid", subgroup_key(["source", "line"], ["NGC253", "CO43"])))

    assert seen["files"] == {f"{key}/calibrated.dat": text for key, text in written.items()}
    assert len(set(written.values())) == 2  # two different files of one name, both kept
    _assert_read_only(seen)


def test_the_host_runtime_gets_the_same_folders_in_the_run_directory(
    ccat_env: Path, tmp_path: Path, make_services,
) -> None:
    """Without a container the run directory holds the same layout (hard links of the
    upstream products), so ``$WORKFLOW_OUTPUT_DIR/../<upstream step>`` and the seed's
    relative paths from the working directory work too."""
    apply_and_ingest(tmp_path, pipeline_spec(tmp_path / "processing"), SCANS)
    services = make_services(LocalBackend(get_settings().jobs_dir), HostRuntime(), make_stager)
    firsts = [_run(services, "calibrate", _scan(scan)) for scan, _s, _l in SCANS]
    grid = _run(services, "grid", subgroup_key(["source", "line"], ["NGC253", "CO43"]))
    for first in firsts:
        [product] = [p for p in first.products if p["type"] == "INTERMEDIATE"
                     and p["path"].endswith("out-0000.txt")]
        upstream_file = Path(first.run_dir) / product["path"]
        view = (Path(grid.run_dir) / "workspace/calibrate" / first.sub_group_key
                / "science/out-0000.txt")
        assert view.read_bytes() == upstream_file.read_bytes()
        assert view.stat().st_ino == upstream_file.stat().st_ino  # linked, not copied
        assert not (view.parent.parent / "logs").exists()  # logs are never inputs
    assert not any(p["path"].startswith("workspace/calibrate/") for p in grid.products)
