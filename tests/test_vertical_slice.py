"""Materializing a partition runs the step's program (host runtime, local backend) and
records an ExecutedReductionStep and its DataProducts, with lineage, on both databases."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ccat_assets.cli import cli
from ccat_assets.definitions import load_definitions
from ccat_assets.grouping import subgroup_key
from ccat_assets.opsdb import (
    DataProduct,
    DataProductType,
    ExecutedReductionStep,
    RunStatus,
    data_product_lineage,
)
from ccat_assets.opsdb.session import session_scope
from tests.factories import pipeline_spec, write_observations, write_spec

SCANS = [("scan-001", "NGC253", "CO43"), ("scan-002", "NGC253", "CO43"),
         ("scan-003", "ORION", "CII")]


@pytest.fixture
def applied(ccat_env: Path, tmp_path: Path) -> Path:
    runner = CliRunner()
    spec = write_spec(tmp_path / "p.yaml", pipeline_spec(tmp_path / "processing"))
    assert runner.invoke(cli, ["apply", "--no-reload", str(spec)]).exit_code == 0
    manifest = write_observations(tmp_path / "archive", SCANS)
    assert runner.invoke(cli, ["ingest", str(manifest)]).exit_code == 0
    return tmp_path


def _materialize(defs: dg.Definitions, instance: dg.DagsterInstance, step: str, key: str):
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        partition_key=key, instance=instance,
        asset_selection=[dg.AssetKey(["ccat", "chai_test", step])],
    )


def test_materialize_first_step_then_final_step(applied: Path) -> None:
    defs = load_definitions()
    scan_key = subgroup_key(["executed_obs_unit"], ["scan-001"])
    map_key = subgroup_key(["source", "line"], ["NGC253", "CO43"])
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(
            "chai_test__executed_obs_unit",
            [subgroup_key(["executed_obs_unit"], [s]) for s, _, _ in SCANS])
        instance.add_dynamic_partitions("chai_test__source+line", [map_key])
        for scan, _, _ in SCANS[:2]:
            result = _materialize(defs, instance, "calibrate",
                                  subgroup_key(["executed_obs_unit"], [scan]))
            assert result.success
        result = _materialize(defs, instance, "grid", map_key)
        assert result.success
        event = instance.get_latest_materialization_event(
            dg.AssetKey(["ccat", "chai_test", "grid"]))
        metadata = event.asset_materialization.metadata
        assert metadata["sub_group"].value == map_key
        assert metadata["raw_packages"].value == 2
        assert metadata["container_runtime"].value == "host"

    with session_scope() as s:
        runs = s.scalars(sa.select(ExecutedReductionStep).order_by(ExecutedReductionStep.id)).all()
        assert [(r.step.name, r.status) for r in runs] == [
            ("calibrate", RunStatus.COMPLETED), ("calibrate", RunStatus.COMPLETED),
            ("grid", RunStatus.COMPLETED)]
        assert runs[0].sub_group_key == scan_key
        assert runs[0].hpc_job_id and runs[0].processing_time_s is not None
        assert runs[0].execution_command[-1].endswith("reduce_copy.py")
        calibrated = [p for p in runs[0].products
                      if p.data_product_type == DataProductType.INTERMEDIATE]
        assert len(calibrated) == 2  # one per raw file of the scan
        assert calibrated[0].quality_metrics["n_bytes"] > 0
        assert all(p.checksum.startswith("sha256:") for p in runs[0].products)
        science = [p for p in runs[2].products if p.data_product_type == DataProductType.SCIENCE]
        # Every step sees its sub-group's raw files (2 scans x 2) and, here, the 4 calibrated
        # products of those scans; the program writes one science file per input.
        assert len(science) == 8
        lineage = set(s.scalars(
            sa.select(data_product_lineage.c.raw_data_package_id)
            .where(data_product_lineage.c.data_product_id == science[0].id)))
        assert len(lineage) == 2
        logs = s.scalars(sa.select(DataProduct).filter_by(
            executed_reduction_step_id=runs[2].id, data_product_type=DataProductType.LOG)).all()
        assert {p.name for p in logs} >= {"program.log", "stdout.log"}


def test_failed_program_marks_run_failed_and_keeps_logs(ccat_env: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    spec = pipeline_spec(tmp_path / "processing", extra_step_params={"partial": True, "fail": 3})
    assert runner.invoke(cli, ["apply", "--no-reload",
                               str(write_spec(tmp_path / "p.yaml", spec))]).exit_code == 0
    manifest = write_observations(tmp_path / "archive", SCANS[:1])
    assert runner.invoke(cli, ["ingest", str(manifest)]).exit_code == 0
    key = subgroup_key(["executed_obs_unit"], ["scan-001"])
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("chai_test__executed_obs_unit", [key])
        job = defs.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(
            partition_key=key, instance=instance, raise_on_error=False,
            asset_selection=[dg.AssetKey(["ccat", "chai_test", "calibrate"])])
        assert not result.success
    with session_scope() as s:
        run = s.scalar(sa.select(ExecutedReductionStep))
        assert run.status == RunStatus.FAILED
        assert run.exit_code == 3 and "exit code 3" in run.error_message
        types = {p.data_product_type for p in run.products}
        assert types == {DataProductType.LOG}  # partial outputs are not products
