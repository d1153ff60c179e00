"""Asset checks per partition, through real Dagster runs of the test pipeline, and the pure
threshold evaluation they use; on both databases where they touch one."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from ccat_assets.dagster_face.checks import FILES, QUALITY, SCIENCE
from ccat_assets.definitions import load_definitions
from ccat_assets.opsdb import DataProduct, DataProductType, ExecutedReductionStep, RunStatus
from ccat_assets.opsdb.session import session_scope
from ccat_assets.results.provenance.verify import evaluate_thresholds
from tests.factories import pipeline_spec, write_observations, write_spec
from tests.results.kit import (
    PIPELINE,
    SCANS,
    apply_and_ingest,
    ccat,
    map_key,
    materialize,
    reduce_all,
    register_partitions,
    scan_key,
)

GRID = dg.AssetKey(["ccat", PIPELINE, "grid"])
CALIBRATE = dg.AssetKey(["ccat", PIPELINE, "calibrate"])
NGC = map_key("NGC253", "CO43")
NGC_SCANS = SCANS[:2]


def _evaluations(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], object]:
    return {(e.check_name, e.partition): e for e in result.get_asset_check_evaluations()}


def _meta(evaluation, name: str):
    return evaluation.metadata[name].value


def test_checks_run_per_partition_with_each_materialization(
        ccat_env: Path, tmp_path: Path) -> None:
    # reduce_copy reports n_bytes per output: 70-140 here, so max 10 must warn.
    apply_and_ingest(tmp_path, thresholds={"n_bytes": {"max": 10}}, scans=NGC_SCANS)
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        results = reduce_all(defs, instance, NGC_SCANS)
    calibrate = _evaluations(results[0])
    assert set(calibrate) == {(FILES, scan_key("scan-001")), (QUALITY, scan_key("scan-001"))}
    assert all(e.passed for e in calibrate.values())
    assert calibrate[(QUALITY, scan_key("scan-001"))].description == (
        "no quality thresholds configured")
    assert _meta(calibrate[(FILES, scan_key("scan-001"))], "verified") == 5  # 2 + 3 logs

    grid = _evaluations(results[2])  # NGC253/CO43, after its two calibrations
    assert set(grid) == {(FILES, NGC), (SCIENCE, NGC), (QUALITY, NGC)}
    assert grid[(FILES, NGC)].passed and grid[(SCIENCE, NGC)].passed
    assert _meta(grid[(SCIENCE, NGC)], "science_products") == 8
    quality = grid[(QUALITY, NGC)]
    assert not quality.passed and quality.severity == dg.AssetCheckSeverity.WARN
    assert _meta(quality, "violations") == 8 and _meta(quality, "values_evaluated") == 8
    assert "n_bytes" in _meta(quality, "details") and "x <= 10" in _meta(quality, "details")
    assert results[2].success  # a WARN never fails the step's run


def test_integrity_check_rerun_alone_finds_missing_and_corrupt_files(
        ccat_env: Path, tmp_path: Path) -> None:
    apply_and_ingest(tmp_path, scans=[("scan-001", "NGC253", "CO43")])
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        register_partitions(instance, [("scan-001", "NGC253", "CO43")])
        assert materialize(defs, instance, "calibrate", scan_key("scan-001")).success
        assert materialize(defs, instance, "grid", NGC).success
        with session_scope() as s:
            run = s.scalar(sa.select(ExecutedReductionStep).where(
                ExecutedReductionStep.sub_group_key == NGC))
            science = s.scalars(sa.select(DataProduct).filter_by(
                executed_reduction_step_id=run.id,
                data_product_type=DataProductType.SCIENCE).order_by(DataProduct.id)).all()
            first, second = (Path(run.run_dir) / p.relative_path for p in science[:2])
        first.unlink()
        second.write_text("tampered\n")

        job = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection=set(), asset_check_selection={dg.AssetCheckKey(GRID, FILES)})
        rerun = job.execute_in_process(instance=instance, tags={"dagster/partition": NGC})
    (evaluation,) = rerun.get_asset_check_evaluations()
    assert evaluation.partition == NGC and evaluation.check_name == FILES
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert (_meta(evaluation, "missing"), _meta(evaluation, "mismatched")) == (1, 1)
    problems = _meta(evaluation, "problems")
    assert "missing: output/science/out-0000.txt" in problems
    assert "mismatch: output/science/out-0001.txt (size" in problems


def test_final_step_without_science_fails_the_run_clearly(ccat_env: Path, tmp_path: Path
                                                         ) -> None:
    spec = pipeline_spec(tmp_path / "processing")
    spec["pipelines"][0]["steps"][1]["config"]["parameters"]["write_nothing"] = True
    ccat("apply", "--no-reload", str(write_spec(tmp_path / "p.yaml", spec)))
    scans = [("scan-001", "NGC253", "CO43")]
    ccat("ingest", str(write_observations(tmp_path / "archive", scans)))
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        register_partitions(instance, scans)
        assert materialize(defs, instance, "calibrate", scan_key("scan-001")).success
        result = materialize(defs, instance, "grid", NGC, raise_on_error=False)
        assert not result.success
        assert result.get_asset_check_evaluations() == []  # checks never judge a failed run
    with session_scope() as s:
        run = s.scalar(sa.select(ExecutedReductionStep).where(
            ExecutedReductionStep.sub_group_key == NGC))
        assert run.status == RunStatus.FAILED
        assert run.error_message == ("collection failed: final step wrote no SCIENCE product "
                                     "(expected files under output/science/)")
        assert {p.data_product_type for p in run.products} == {DataProductType.LOG}


PRODUCTS = [("a.fits", {"rms": 0.5, "snr": 12}), ("b.fits", {"rms": 2.5}), ("c.fits", {})]


@pytest.mark.parametrize("thresholds, violations, severity", [
    ({}, [], "warn"),
    ({"rms": {"max": 3.0}}, [], "warn"),
    ({"rms": {"max": 1.0}}, ["b.fits: rms = 2.5 violates x <= 1"], "warn"),
    ({"rms": {"min": 1.0, "max": None}}, ["a.fits: rms = 0.5 violates x >= 1"], "warn"),
    ({"snr": {"min": 20, "severity": "error"}, "rms": {"max": 5}},
     ["a.fits: snr = 12 violates x >= 20"], "error"),
    ({"tsys": {"max": 300}}, ["tsys: reported by no product (x <= 300)"], "warn"),
    ({"rms": {"min": 0, "max": 1, "severity": "ERROR"}},
     ["b.fits: rms = 2.5 violates 0 <= x <= 1"], "error"),
])
def test_threshold_evaluation(thresholds, violations, severity) -> None:
    report = evaluate_thresholds(thresholds, PRODUCTS)
    assert [v.text() for v in report.violations] == violations
    assert report.passed == (not violations)
    assert report.severity == severity
