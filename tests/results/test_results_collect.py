"""Collection: discovery by the contract's directories, product records, sidecars, symlinks,
idempotency (also under a concurrent double collect) and flat lineage, on both databases."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ccat_assets.opsdb import (
    DataProduct,
    DataProductType,
    ExecutedReductionStep,
    PhysicalCopy,
    PhysicalCopyStatus,
    data_product_lineage,
)
from ccat_assets.opsdb.session import session_factory
from ccat_assets.results.collect import CollectionError, collect_run, read_sidecar
from tests.results.kit import make_run, map_key, package_ids, scan_key, symlink, write

T = DataProductType


def _final_outputs(layout, sidecar=None) -> None:
    out = layout.output_dir
    write(out / "science" / "cube.fits", b"cube" * 1000, sidecar or {
        "metadata": {"bunit": "K"}, "quality_metrics": {"rms_k": 0.4, "n_spectra": 12}})
    write(out / "science" / "sub" / "map.fits.gz", b"map")
    write(out / "qa" / "qa.json", "{}")
    write(out / "plots" / "map.png", b"\x89PNG")
    write(out / "statistics" / "stats.csv", "a,b\n1,2\n")
    write(out / "logs" / "reduce.log", "ok\n")
    write(layout.logs_dir / "stdout.log", "hello\n")


def _products(session: Session, run_id: int) -> dict[str, DataProduct]:
    return {p.relative_path: p for p in session.scalars(
        sa.select(DataProduct).filter_by(executed_reduction_step_id=run_id))}


def test_final_step_outputs_become_typed_products(session, applied, location_id) -> None:
    run, layout = make_run(session, "grid", map_key("NGC253", "CO43"), applied,
                           raw_ids=package_ids(session, "scan-001", "scan-002"))
    _final_outputs(layout)
    write(layout.output_dir / "stray.txt", "not in a product folder")
    write(layout.workspace_dir / "scratch.tmp", "scratch of a final step")
    write(layout.output_dir / "science" / ".cube.fits.partial", "hidden")

    result = collect_run(session, run, layout, is_final=True,
                         processing_location_id=location_id)

    products = _products(session, run.id)
    assert {rel: p.data_product_type for rel, p in products.items()} == {
        "output/science/cube.fits": T.SCIENCE, "output/science/sub/map.fits.gz": T.SCIENCE,
        "output/qa/qa.json": T.QA_METRIC, "output/plots/map.png": T.PLOT,
        "output/statistics/stats.csv": T.STATISTICS, "output/logs/reduce.log": T.LOG,
        "logs/stdout.log": T.LOG,
    }
    assert result.new == 7 and len(result.products) == 7
    assert any("output/stray.txt" in w and "not a product" in w for w in result.warnings)
    cube = products["output/science/cube.fits"]
    assert cube.size_bytes == 4000 and cube.format == "fits" and cube.name == "cube.fits"
    assert cube.checksum == "sha256:" + hashlib.sha256(b"cube" * 1000).hexdigest()
    assert cube.meta == {"bunit": "K"}
    assert cube.quality_metrics == {"rms_k": 0.4, "n_spectra": 12}
    assert cube.warnings == []
    assert products["output/science/sub/map.fits.gz"].format == "fits.gz"
    copy = session.scalar(sa.select(PhysicalCopy).filter_by(data_product_id=cube.id))
    assert copy.status == PhysicalCopyStatus.PRESENT
    assert copy.data_location_id == location_id
    assert copy.path == str(layout.output_dir / "science" / "cube.fits")
    assert copy.checksum == cube.checksum


def test_intermediate_step_workspace_becomes_intermediate(session, applied, location_id) -> None:
    run, layout = make_run(session, "calibrate", scan_key("scan-001"), applied,
                           raw_ids=package_ids(session, "scan-001"))
    big = bytes(range(256)) * (3 * 4096 + 1)  # > 3 chunks of the streamed hash
    write(layout.workspace_dir / "cal" / "scan.h5", big)
    write(layout.output_dir / "qa" / "misplaced.json", "{}")

    result = collect_run(session, run, layout, is_final=False,
                         processing_location_id=location_id)

    (product,) = [p for p in result.products if p.data_product_type == T.INTERMEDIATE]
    assert product.relative_path == "workspace/calibrate/cal/scan.h5"
    assert product.checksum == "sha256:" + hashlib.sha256(big).hexdigest()
    assert product.size_bytes == len(big)
    assert any(w.startswith("output/: 1 file(s)") for w in result.warnings)


def test_collecting_twice_records_nothing_new(session, applied, location_id) -> None:
    raw = package_ids(session, "scan-001", "scan-002")
    run, layout = make_run(session, "grid", map_key("NGC253", "CO43"), applied, raw_ids=raw)
    _final_outputs(layout)
    first = collect_run(session, run, layout, is_final=True, processing_location_id=location_id)
    counts = _counts(session)
    second = collect_run(session, run, layout, is_final=True, processing_location_id=location_id)
    assert (first.new, second.new) == (7, 0)
    assert [p.id for p in second.products] == [p.id for p in first.products]
    assert _counts(session) == counts == (7, 7, 14)


def _counts(session: Session) -> tuple[int, int, int]:
    def n(table) -> int:
        return session.scalar(sa.select(sa.func.count()).select_from(table))
    copies = session.scalar(sa.select(sa.func.count()).select_from(PhysicalCopy)
                            .where(PhysicalCopy.data_product_id.is_not(None)))
    return n(DataProduct), copies, n(data_product_lineage)


def test_concurrent_double_collect_is_absorbed(session, applied, location_id) -> None:
    """Two collectors on one run: the second waits for the first's commit, then finds its rows
    (ON CONFLICT DO NOTHING) instead of failing or duplicating anything."""
    raw = package_ids(session, "scan-001")
    run, layout = make_run(session, "grid", map_key("NGC253", "CO43"), applied, raw_ids=raw)
    _final_outputs(layout)
    session.commit()
    sessions = session_factory()
    outcome: dict[str, object] = {}

    def second_collector() -> None:
        with sessions() as other:
            try:
                again = other.get(ExecutedReductionStep, run.id)
                result = collect_run(other, again, layout, is_final=True,
                                     processing_location_id=location_id)
                other.commit()
                outcome["new"], outcome["n"] = result.new, len(result.products)
            except Exception as exc:  # the test reports it below
                outcome["error"] = exc

    with sessions() as first:
        mine = collect_run(first, first.get(ExecutedReductionStep, run.id), layout,
                           is_final=True, processing_location_id=location_id)
        thread = threading.Thread(target=second_collector)
        thread.start()
        time.sleep(1.0)
        assert thread.is_alive(), "the second collector must wait for the first one's commit"
        first.commit()
    thread.join(timeout=60)
    assert "error" not in outcome, outcome.get("error")
    assert mine.new == 7 and outcome == {"new": 0, "n": 7}
    session.expire_all()
    assert _counts(session) == (7, 7, 7)


def test_symlinks_outside_the_run_are_rejected(session, applied, location_id, tmp_path) -> None:
    run, layout = make_run(session, "grid", map_key("NGC253", "CO43"), applied)
    _final_outputs(layout)
    secret = write(tmp_path / "elsewhere" / "secret.fits", "not the run's")
    symlink(layout.output_dir / "science" / "evil.fits", secret)
    symlink(layout.output_dir / "science" / "evil_dir", secret.parent)
    symlink(layout.output_dir / "science" / "dangling.fits", tmp_path / "nothing-here")
    inside = write(layout.workspace_dir / "inside.fits", "made by the run")
    symlink(layout.output_dir / "science" / "alias.fits", inside)

    result = collect_run(session, run, layout, is_final=True,
                         processing_location_id=location_id)

    paths = {p.relative_path for p in result.products}
    assert "output/science/evil.fits" not in paths
    assert "output/science/evil_dir/secret.fits" not in paths
    assert "output/science/alias.fits" in paths
    text = "\n".join(result.warnings)
    assert "output/science/evil.fits: symlink pointing outside the run directory" in text
    assert "output/science/evil_dir: symlinked directory, not followed" in text
    assert "output/science/dangling.fits: symlink pointing outside" in text


@pytest.mark.parametrize("sidecar, problem", [
    ("{not json", "Expecting property name"),
    ("[1, 2]", "top level is not an object"),
    ('{"quality_metrics": [1]}', "must be objects"),
    ('{"quality_metrics": {"rms": NaN}}', "NaN is not valid JSON"),
])
def test_malformed_sidecar_keeps_the_product_with_a_warning(
        session, applied, location_id, sidecar, problem) -> None:
    run, layout = make_run(session, "grid", map_key("NGC253", "CO43"), applied)
    write(layout.output_dir / "science" / "cube.fits", "data", sidecar)

    result = collect_run(session, run, layout, is_final=True,
                         processing_location_id=location_id)

    (cube,) = [p for p in result.products if p.name == "cube.fits"]
    assert cube.meta == {} and cube.quality_metrics == {}
    assert len(cube.warnings) == 1 and problem in cube.warnings[0]
    assert "cube.fits.meta.json" in cube.warnings[0]
    assert any(w.startswith("output/science/cube.fits: malformed sidecar") for w in
               result.warnings)


def test_non_numeric_metrics_are_dropped_the_rest_kept(session, applied, location_id) -> None:
    run, layout = make_run(session, "grid", map_key("NGC253", "CO43"), applied)
    write(layout.output_dir / "science" / "cube.fits", "data", {
        "metadata": {"bunit": "K"},
        "quality_metrics": {"rms": 0.3, "flag": "good", "ok": True, "n": 4}})

    (cube,) = collect_run(session, run, layout, is_final=True,
                          processing_location_id=location_id).products

    assert cube.meta == {"bunit": "K"} and cube.quality_metrics == {"rms": 0.3, "n": 4}
    assert cube.warnings == ["sidecar cube.fits.meta.json: quality metrics ['flag', 'ok'] "
                             "are not finite numbers, ignored"]


def test_read_sidecar_absent_is_empty(tmp_path: Path) -> None:
    assert read_sidecar(write(tmp_path / "x.fits", "x")).warning is None


def test_final_step_without_science_fails_clearly(session, applied, location_id) -> None:
    run, layout = make_run(session, "grid", map_key("NGC253", "CO43"), applied)
    write(layout.output_dir / "plots" / "map.png", b"png")
    write(layout.output_dir / "science.fits", "science in the wrong place")
    with pytest.raises(CollectionError, match=r"final step wrote no SCIENCE product "
                                              r"\(expected files under output/science/\)"):
        collect_run(session, run, layout, is_final=True, processing_location_id=location_id)


def test_lineage_links_products_to_every_raw_package_they_descend_from(
        session, applied, location_id) -> None:
    raw1, raw2, raw3 = package_ids(session, "scan-001", "scan-002", "scan-003")
    cal, cal_layout = make_run(session, "calibrate", scan_key("scan-001"), applied,
                               raw_ids=[raw1])
    write(cal_layout.workspace_dir / "cal.h5", "calibrated 1")
    cal_products = collect_run(session, cal, cal_layout, is_final=False,
                               processing_location_id=location_id).products
    cal_ids = [p.id for p in cal_products if p.data_product_type == T.INTERMEDIATE]

    # The map uses raw2 directly and raw1 only through the calibrated product.
    grid, layout = make_run(session, "grid", map_key("NGC253", "CO43"), applied,
                            raw_ids=[raw2], product_ids=cal_ids)
    _final_outputs(layout)
    products = collect_run(session, grid, layout, is_final=True,
                           processing_location_id=location_id).products

    for product in products:
        raw = set(session.scalars(sa.select(data_product_lineage.c.raw_data_package_id)
                                  .where(data_product_lineage.c.data_product_id == product.id)))
        assert raw == {raw1, raw2}
    assert raw3 not in raw
