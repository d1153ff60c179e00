"""Lineage queries, the tree, its JSON, the W3C PROV-JSON export (loaded with the ``prov``
package) and the ``products`` / ``runs`` / ``lineage`` commands, on both databases.

The runs are made by hand and collected for real (fast); ``test_results_checks`` does the
same through Dagster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from prov.model import (
    ProvActivity,
    ProvAgent,
    ProvAssociation,
    ProvDerivation,
    ProvDocument,
    ProvEntity,
    ProvGeneration,
    ProvMembership,
    ProvUsage,
)
from sqlalchemy.orm import Session

from ccat_assets.collect import collect_run
from ccat_assets.opsdb import DataProductType, RunStatus
from ccat_assets.prov_export import to_prov_json
from ccat_assets.provenance import load_lineage, products_using, raw_ancestry, resolve_package
from tests.results.kit import ccat, ccat_json, make_run, map_key, package_ids, scan_key, write


@dataclass
class Made:
    cube: int
    plot: int
    calibrated: list[int]
    raw: list[int]
    runs: list[int]


def _made(session: Session, base: Path, location_id: int) -> Made:
    """calibrate scan-001 and scan-002 -> grid NGC253/CO43 (cube, plot, logs)."""
    raw = package_ids(session, "scan-001", "scan-002")
    calibrated, runs = [], []
    for scan, rid in zip(("scan-001", "scan-002"), raw, strict=True):
        run, layout = make_run(session, "calibrate", scan_key(scan), base, raw_ids=[rid])
        write(layout.workspace_dir / "cal.h5", f"calibrated {scan}")
        write(layout.logs_dir / "stdout.log", "ok")
        products = collect_run(session, run, layout, is_final=False,
                               processing_location_id=location_id).products
        calibrated += [p.id for p in products
                       if p.data_product_type == DataProductType.INTERMEDIATE]
        run.status = RunStatus.COMPLETED
        runs.append(run.id)
    grid, layout = make_run(session, "grid", map_key("NGC253", "CO43"), base, raw_ids=raw,
                            product_ids=calibrated)
    write(layout.output_dir / "science" / "cube.fits", "cube",
          {"quality_metrics": {"rms_k": 0.5}})
    write(layout.output_dir / "plots" / "cube.png", "png")
    write(layout.logs_dir / "stdout.log", "ok")
    products = {p.name: p.id for p in collect_run(
        session, grid, layout, is_final=True, processing_location_id=location_id).products}
    grid.status = RunStatus.COMPLETED
    runs.append(grid.id)
    session.commit()
    return Made(products["cube.fits"], products["cube.png"], calibrated, raw, runs)


@pytest.fixture
def made(session: Session, applied: Path, location_id: int) -> Made:
    return _made(session, applied, location_id)


def test_graph_reaches_raw_files_through_intermediates(session, made: Made) -> None:
    graph = load_lineage(session, made.cube)
    assert set(graph.products) == {made.cube, *made.calibrated}
    assert set(graph.runs) == set(made.runs)
    assert set(graph.raw_packages) == set(made.raw)
    assert all(len(p.files) == 2 for p in graph.raw_packages.values())
    grid = graph.run_of(made.cube)
    assert grid.step == "grid" and grid.command == ("prog", "--flag")
    assert grid.input_product_ids == tuple(sorted(made.calibrated))
    assert {s.name for s in graph.software.values()} == {"test-calibration", "test-gridding"}
    assert graph.products[made.cube].copies[0].status == "PRESENT"
    document = graph.to_json()
    assert document["product"] == made.cube
    assert json.loads(json.dumps(document)) == document  # plain JSON all the way


def test_raw_ancestry_and_reverse(session, made: Made) -> None:
    assert [r["id"] for r in raw_ancestry(session, made.cube)] == made.raw
    assert [r["id"] for r in raw_ancestry(session, made.calibrated[0])] == made.raw[:1]
    affected = products_using(session, resolve_package(session, "scan-001-chai"))
    used = {p["id"] for p in affected.products}
    assert {made.cube, made.plot, made.calibrated[0]} <= used
    assert made.calibrated[1] not in used
    assert {(p["step"], p["sub_group_key"]) for p in affected.pairs} == {
        ("calibrate", scan_key("scan-001")), ("grid", map_key("NGC253", "CO43"))}


def test_reverse_marks_superseded_results(session, made: Made, applied, location_id) -> None:
    """A newer completed run of the same pair makes the older products 'superseded'."""
    run, layout = make_run(session, "calibrate", scan_key("scan-001"), applied,
                           raw_ids=made.raw[:1], status=RunStatus.COMPLETED)
    write(layout.workspace_dir / "cal.h5", "calibrated again")
    newer = collect_run(session, run, layout, is_final=False,
                        processing_location_id=location_id).products[0].id
    session.commit()
    affected = products_using(session, resolve_package(session, str(made.raw[0])))
    current = {p["id"]: p["current"] for p in affected.products}
    assert current[made.calibrated[0]] is False and current[newer] is True
    pair = next(p for p in affected.pairs if p["step"] == "calibrate")
    assert pair["run_id"] == run.id


def _prov(document: dict) -> ProvDocument:
    return ProvDocument.deserialize(content=json.dumps(document), format="json")


def test_prov_json_loads_in_prov_with_every_record(session, made: Made) -> None:
    prov = _prov(to_prov_json(load_lineage(session, made.cube)))

    def count(kind) -> int:
        return len(list(prov.get_records(kind)))

    # 3 products + 2 raw packages + 4 raw files; 3 runs; 2 software versions.
    assert (count(ProvEntity), count(ProvActivity), count(ProvAgent)) == (9, 3, 2)
    assert count(ProvGeneration) == 3
    assert count(ProvUsage) == 6          # grid: 2 products + 2 packages; calibrate: 1 + 1
    assert count(ProvAssociation) == 3
    assert count(ProvDerivation) == 6     # cube <- 4 inputs; each calibrated <- 1 package
    assert count(ProvMembership) == 4
    cube = prov.get_record(f"ccat:product-{made.cube}")[0]
    attrs = {str(k): v for k, v in cube.attributes}
    assert str(attrs["ccat:checksum"]).startswith("sha256:")
    run = prov.get_record(f"ccat:run-{made.runs[-1]}")[0]
    assert run.get_startTime() is not None and run.get_endTime() is not None
    run_attrs = {str(k): v for k, v in run.attributes}
    assert json.loads(str(run_attrs["ccat:command"])) == ["prog", "--flag"]
    assert str(run_attrs["ccat:status"]) == "COMPLETED"
    agent = prov.get_record("ccat:software-test-gridding-1.0.0")[0]
    assert {str(k) for k, _ in agent.attributes} >= {"prov:type", "ccat:image"}


def test_products_and_runs_commands(made: Made) -> None:
    rows = ccat_json("products", "--pipeline", "chai_test", "--step", "grid",
                     "--type", "science")
    assert [r["id"] for r in rows] == [made.cube]
    assert rows[0]["copies"][0]["status"] == "PRESENT"
    assert rows[0]["quality_metrics"] == {"rms_k": 0.5}
    by_key = ccat_json("products", "--sub-group", scan_key("scan-001"))
    assert {r["type"] for r in by_key} == {"INTERMEDIATE", "LOG"}
    assert "no products match" in ccat("products", "--pipeline", "nope").output
    text = ccat("products", "--type", "PLOT").output
    assert "cube.png" in text and "cube.fits" not in text

    runs = ccat_json("runs", "--pipeline", "chai_test", "--status", "completed")
    assert [r["id"] for r in runs] == sorted(made.runs, reverse=True)
    assert runs[0]["products"] == 3 and runs[0]["software"] == "test-gridding 1.0.0"
    assert ccat_json("runs", "--status", "FAILED") == []
    assert "grid" in ccat("runs").output


def test_lineage_command_formats(made: Made) -> None:
    tree = ccat("lineage", str(made.cube)).output
    assert tree.splitlines()[0].startswith(f"product {made.cube} output/science/cube.fits")
    assert "made by run" in tree and "raw package" in tree and "file spec_0.dat" in tree
    assert tree.count("workspace/calibrate/cal.h5") == 2
    document = json.loads(ccat("lineage", str(made.cube), "--json").output)
    assert [r["id"] for r in document["raw_ancestry"]] == made.raw
    assert len(document["runs"]) == 3
    prov = _prov(json.loads(ccat("lineage", str(made.cube), "--format", "prov-json").output))
    assert len(list(prov.get_records(ProvActivity))) == 3

    reverse = json.loads(ccat("lineage", "--raw", "scan-002-chai", "--json").output)
    assert made.cube in {p["id"] for p in reverse["products"]}
    assert {p["step"] for p in reverse["recompute"]} == {"calibrate", "grid"}
    assert "to recompute" in ccat("lineage", "--raw", "scan-002-chai").output


def test_lineage_command_errors(made: Made) -> None:
    assert "no data product with id 999999" in ccat("lineage", "999999", ok=False).output
    assert "no raw data package 'nope'" in ccat("lineage", "--raw", "nope", ok=False).output
    result = ccat("lineage", ok=False)
    assert result.exit_code == 2 and "either PRODUCT_ID or --raw" in result.output
