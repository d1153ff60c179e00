"""The materialization a person reads: consumed raw packages and upstream products as bounded
tables, quicklook previews of PLOT products, the image digest when the spec declares one, and
integer exit codes; a completed run reported again carries the same. Real runs on the local
backend, both databases."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from PIL import Image

from ccat_assets.definitions import load_definitions
from ccat_assets.opsdb import RawDataPackage
from ccat_assets.opsdb.session import session_scope
from ccat_assets.results import run_consumed
from tests.factories import pipeline_spec, write_observations, write_spec
from tests.results.kit import (
    PIPELINE,
    SCANS,
    ccat,
    map_key,
    materialize,
    reduce_all,
    register_partitions,
    scan_key,
)

DIGEST = "sha256:" + "ab" * 32
NGC253 = map_key("NGC253", "CO43")


@pytest.fixture
def plotted(ccat_env: Path, tmp_path: Path) -> Path:
    """The test pipeline whose grid writes two quicklook PNGs (one large), with a declared
    image digest for the gridding software only."""
    spec = pipeline_spec(tmp_path / "processing")
    spec["software"][1]["versions"][0]["digest"] = DIGEST
    grid = spec["pipelines"][0]["steps"][1]
    grid["config"]["parameters"]["plots"] = {"mom0.png": 600, "small.png": 40}
    ccat("apply", "--no-reload", str(write_spec(tmp_path / "pipeline.yaml", spec)))
    ccat("ingest", str(write_observations(tmp_path / "archive", SCANS)))
    return tmp_path


def latest(instance: dg.DagsterInstance, step: str, key: str) -> dict[str, Any]:
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["ccat", PIPELINE, step]),
                              asset_partitions=[key]), limit=1).records[0]
    return dict(record.asset_materialization.metadata)


def rows(table: dg.TableMetadataValue) -> list[dict[str, Any]]:
    return [dict(r.data) for r in table.records]


def test_the_tables_previews_and_figures_of_a_materialization(plotted: Path) -> None:
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        runs = reduce_all(defs, instance)
        calibrate_runs = {scan_key(s): r.run_id for (s, _, _), r in zip(SCANS, runs,
                                                                       strict=False)}
        scan = latest(instance, "calibrate", scan_key("scan-001"))
        assert rows(scan["raw_inputs"].value) == [{
            "name": "scan-001-chai", "checksum": registered_checksum("scan-001-chai"),
            "archived_at": "test-archive:2026-11-01/scan-001"}]
        assert scan["raw_packages"].value == 1
        assert scan["upstream_products"].value == 0 and "upstream_inputs" not in scan
        assert "image_digest" not in scan  # the calibration software declares none
        assert isinstance(scan["exit_code"], dg.IntMetadataValue)
        assert scan["exit_code"].value == 0
        assert isinstance(scan["processing_time_s"], dg.FloatMetadataValue)

        grid = latest(instance, "grid", NGC253)
        upstream = rows(grid["upstream_inputs"].value)
        assert grid["upstream_products"].value == len(upstream) == 4  # 2 scans x 2 files
        assert {(u["step"], u["sub_group"], u["dagster_run_id"]) for u in upstream} == {
            ("calibrate", scan_key(s), calibrate_runs[scan_key(s)])
            for s in ("scan-001", "scan-002")}
        assert all(u["product"].startswith("workspace/calibrate/science/") for u in upstream)
        assert [r["name"] for r in rows(grid["raw_inputs"].value)] == [
            "scan-001-chai", "scan-002-chai"]
        assert grid["image_digest"].value == DIGEST
        assert isinstance(grid["exit_code"], dg.IntMetadataValue)

        for name, side in (("mom0.png", 256), ("small.png", 40)):
            text = grid[f"quicklook output/plots/{name}"].value
            assert text.startswith(f"![{name}](data:image/png;base64,") and text.endswith(")")
            assert len(text) <= 32 * 1024
            png = base64.b64decode(text.split(",", 1)[1][:-1])
            assert Image.open(io.BytesIO(png)).size == (side, side)


def registered_checksum(name: str) -> str:
    with session_scope() as session:
        return session.scalar(sa.select(RawDataPackage.checksum)
                              .where(RawDataPackage.name == name))


def test_long_lists_are_cut_with_a_pointer_to_the_full_lineage(
        plotted: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_consumed, "MAX_ROWS", 1)
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        reduce_all(defs, instance)
        grid = latest(instance, "grid", NGC253)
        product = grid["ops-db product ids"].value[0]
        raw = rows(grid["raw_inputs"].value)
        assert [r["name"] for r in raw] == [
            "scan-001-chai", f"... and 1 more (ccat-wm lineage {product} lists them all)"]
        assert grid["raw_packages"].value == 2
        upstream = rows(grid["upstream_inputs"].value)
        assert len(upstream) == 2 and upstream[1]["step"] == (
            f"... and 3 more (ccat-wm lineage {product} lists them all)")
        lineage = ccat("lineage", str(product), "--json").output
        assert "scan-002-chai" in lineage


def test_a_completed_run_reported_again_carries_the_same_tables(plotted: Path) -> None:
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        reduce_all(defs, instance)
        first = latest(instance, "grid", NGC253)
        again = materialize(defs, instance, "grid", NGC253)
        second = latest(instance, "grid", NGC253)
        assert "Nothing ran" in second["reused_run"].value
        assert second["dagster_run_id"].value == first["dagster_run_id"].value != again.run_id
        for name in ("raw_inputs", "upstream_inputs", "products", "image_digest", "exit_code",
                     "quicklook output/plots/mom0.png"):
            assert second[name] == first[name], name


def test_a_failed_partition_shows_its_integer_exit_code(ccat_env: Path, tmp_path: Path) -> None:
    spec = pipeline_spec(tmp_path / "processing", extra_step_params={"fail": 3})
    ccat("apply", "--no-reload", str(write_spec(tmp_path / "pipeline.yaml", spec)))
    ccat("ingest", str(write_observations(tmp_path / "archive", SCANS[:1])))
    with dg.instance_for_test() as instance:
        register_partitions(instance, SCANS[:1])
        result = materialize(load_definitions(), instance, "calibrate", scan_key("scan-001"),
                             raise_on_error=False)
        assert not result.success
        failure = result.failure_data_for_node("ccat__chai_test__calibrate").user_failure_data
        assert failure.metadata["exit_code"] == dg.MetadataValue.int(3)
        assert isinstance(failure.metadata["ops-db run id"], dg.IntMetadataValue)
