"""Lineage queries, the tree, its JSON, the W3C PROV-JSON export (loaded with the ``prov``
package) and the ``products`` / ``runs`` / ``lineage`` commands, on both databases.

The runs are made by hand and collected for real (fast); ``test_results_checks`` does the
same through Dagster.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import prov
import pydot
import pytest
import sqlalchemy as sa
from prov.model import (
    ProvActivity,
    ProvAgent,
    ProvAssociation,
    ProvAttribution,
    ProvCommunication,
    ProvDelegation,
    ProvDerivation,
    ProvDocument,
    ProvEntity,
    ProvGeneration,
    ProvMembership,
    ProvUsage,
)
from sqlalchemy.orm import Session

from ccat_assets.opsdb import DataProductType, ReductionSoftware, RunStatus
from ccat_assets.results.collect import collect_run
from ccat_assets.results.prov_export import dumps as prov_dumps
from ccat_assets.results.prov_export import to_prov_document, to_prov_json
from ccat_assets.results.provenance import (
    load_lineage,
    products_using,
    raw_ancestry,
    resolve_package,
)
from ccat_assets.results.provenance.graph import copy_uri
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


def _prov(text: str) -> ProvDocument:
    """A PROV-JSON output parsed back with the ``prov`` package."""
    return prov.read(io.StringIO(text), format="json")


def _relations(doc: ProvDocument, kind: type) -> set[tuple[str | None, ...]]:
    """Each ``kind`` record as the tuple of its formal attributes (ids as ``ccat:...``)."""
    return {tuple(None if v is None else str(v) for _, v in record.formal_attributes)
            for record in doc.get_records(kind)}


def _attributes(doc: ProvDocument, identifier: str) -> dict[str, list[str]]:
    (record,) = doc.get_record(identifier)
    out: dict[str, list[str]] = {}
    for key, value in record.attributes:
        out.setdefault(str(key), []).append(str(value))
    return out


@pytest.fixture
def released(session: Session, made: Made) -> Made:
    """The gridding software with an image digest and a source repository, as in production."""
    software = session.scalar(sa.select(ReductionSoftware).filter_by(name="test-gridding"))
    software.github_repo_url = "https://github.com/ccatobs/test-gridding"
    software.versions[0].digest = "sha256:" + "ab" * 32
    session.commit()
    return made


def test_prov_document_has_every_record_and_relation(session, released: Made) -> None:
    made = released
    graph = load_lineage(session, made.cube)
    doc = _prov(prov_dumps(graph, "prov-json"))
    cube, grid = f"ccat:product-{made.cube}", f"ccat:run-{made.runs[-1]}"
    calibrate_runs = [f"ccat:run-{r}" for r in made.runs[:2]]

    def count(kind) -> int:
        return len(list(doc.get_records(kind)))

    # 3 products + 2 raw packages + 4 raw files + 2 configs; 3 runs; 2 software + 1 person.
    assert (count(ProvEntity), count(ProvActivity), count(ProvAgent)) == (11, 3, 3)
    assert count(ProvGeneration) == 3
    assert count(ProvUsage) == 6          # grid: 2 products + 2 packages; calibrate: 1 + 1
    assert count(ProvDerivation) == 6     # cube <- 4 inputs; each calibrated <- 1 package
    assert count(ProvMembership) == 4

    # The grid run used the calibrate runs' products: it was informed by both runs.
    assert _relations(doc, ProvCommunication) == {(grid, run) for run in calibrate_runs}
    derived = {used for gen, used, *_ in _relations(doc, ProvDerivation) if gen == cube}
    assert derived == ({f"ccat:product-{p}" for p in made.calibrated}
                       | {f"ccat:raw-package-{r}" for r in made.raw})
    assert (cube, grid) in {(e, a) for e, a, _ in _relations(doc, ProvGeneration)}

    # Each run: its software with the step config as plan, and the pipeline's creator.
    grid_config = f"ccat:config-{graph.run_of(made.cube).config_id}"
    associations = _relations(doc, ProvAssociation)
    assert (grid, "ccat:software-test-gridding-1.0.0", grid_config) in associations
    assert {a for a in associations if a[1] == "ccat:person-tester"} == {
        (f"ccat:run-{r}", "ccat:person-tester", None) for r in made.runs}
    assert ("ccat:software-test-gridding-1.0.0", "ccat:person-tester", grid) in _relations(
        doc, ProvDelegation)
    attributed = {(e, a) for e, a in _relations(doc, ProvAttribution)}
    assert (cube, "ccat:person-tester") in attributed and len(attributed) == 3

    plan = _attributes(doc, grid_config)
    assert plan["prov:type"] == ["prov:Plan"]
    assert json.loads(plan["ccat:parameters"][0]) == {"tag": "v1"}
    person = _attributes(doc, "ccat:person-tester")
    assert person["prov:type"] == ["prov:Person"]
    software = _attributes(doc, "ccat:software-test-gridding-1.0.0")
    assert software["prov:type"] == ["prov:SoftwareAgent"]
    assert software["ccat:imageDigest"] == ["sha256:" + "ab" * 32]
    assert software["ccat:repository"] == ["https://github.com/ccatobs/test-gridding"]
    assert software["ccat:image"] == ["ghcr.io/ccatobs/test-gridding:1.0.0"]

    product = _attributes(doc, cube)
    assert product["ccat:checksum"][0].startswith("sha256:")
    copy = graph.products[made.cube].copies[0]
    assert product["prov:location"] == [Path(copy.path).as_uri()]
    (run,) = doc.get_record(grid)
    assert run.get_startTime() is not None and run.get_endTime() is not None
    run_attrs = _attributes(doc, grid)
    assert json.loads(run_attrs["ccat:command"][0]) == ["prog", "--flag"]
    assert run_attrs["ccat:status"] == ["COMPLETED"]


def test_prov_round_trips(session, released: Made) -> None:
    """What the export writes reads back into the same document, in PROV-JSON and through
    the dict that tools get; PROV-N (which ``prov`` writes but does not read) states the
    same relations."""
    doc = to_prov_document(load_lineage(session, released.cube))
    assert _prov(doc.serialize(format="json")) == doc
    assert _prov(json.dumps(to_prov_json(load_lineage(session, released.cube)))) == doc
    provn = doc.get_provn()
    grid, first = released.runs[-1], released.runs[0]
    assert f"wasInformedBy(ccat:run-{grid}, ccat:run-{first})" in provn
    assert (f"wasAssociatedWith(ccat:run-{grid}, ccat:software-test-gridding-1.0.0, "
            f"ccat:config-") in provn


def test_products_and_runs_commands(made: Made) -> None:
    rows = ccat_json("products", "--pipeline", "chai_test", "--step", "grid",
                     "--type", "science")
    assert [r["id"] for r in rows] == [made.cube]
    assert rows[0]["copies"][0]["status"] == "PRESENT"
    assert rows[0]["quality_metrics"] == {"rms_k": 0.5}
    by_key = ccat_json("products", "--sub-group", scan_key("scan-001"))
    assert {r["type"] for r in by_key} == {"INTERMEDIATE", "LOG"}
    assert "no products match" in ccat("products", "--sub-group", "nope").output
    unknown = ccat("products", "--pipeline", "nope", ok=False)
    assert unknown.exit_code == 1 and "no pipeline 'nope' (known: " in unknown.output
    assert "chai_test" in unknown.output
    unknown = ccat("runs", "--pipeline", "chai_test", "--step", "nope", ok=False)
    assert unknown.exit_code == 1 and "no step 'nope' in pipeline 'chai_test'" in unknown.output
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
    document = _prov(ccat("lineage", str(made.cube), "--format", "prov-json").output)
    assert len(list(document.get_records(ProvActivity))) == 3
    provn = ccat("lineage", str(made.cube), "--format", "provn").output
    assert provn.startswith("document") and f"activity(ccat:run-{made.runs[-1]}" in provn
    (dot,) = pydot.graph_from_dot_data(ccat("lineage", str(made.cube), "--format", "dot").output)
    # One node per entity, activity and agent: 11 + 3 + 3 (see the PROV test above).
    labels = {str(node.get("label")).strip('"') for node in dot.get_nodes() if node.get("URL")}
    assert len(labels) == 17
    expected = {f"ccat:product-{made.cube}", f"ccat:run-{made.runs[-1]}", "ccat:person-tester"}
    assert expected <= labels

    reverse = json.loads(ccat("lineage", "--raw", "scan-002-chai", "--json").output)
    assert made.cube in {p["id"] for p in reverse["products"]}
    assert {p["step"] for p in reverse["recompute"]} == {"calibrate", "grid"}
    assert "to recompute" in ccat("lineage", "--raw", "scan-002-chai").output


def test_lineage_command_errors(made: Made) -> None:
    assert "no data product with id 999999" in ccat("lineage", "999999", ok=False).output
    assert "no raw data package 'nope'" in ccat("lineage", "--raw", "nope", ok=False).output
    for fmt in ("prov-json", "provn", "dot"):
        result = ccat("lineage", "--raw", "scan-002-chai", "--format", fmt, ok=False)
        assert result.exit_code == 2 and f"--format {fmt} needs a PRODUCT_ID" in result.output
    result = ccat("lineage", ok=False)
    assert result.exit_code == 2 and "either PRODUCT_ID or --raw" in result.output


@pytest.mark.parametrize(("path", "base_path", "host", "uri"), [
    ("/data/run 1/cube.fits", "/data", None, "file:///data/run%201/cube.fits"),
    ("2026-11-01/scan-001", "/archive", None, "file:///archive/2026-11-01/scan-001"),
    ("/data/cube.fits", "/data", "hpc-login", "file://hpc-login/data/cube.fits"),
    ("ccat/cube.fits", "s3://ccat-products/maps/", None, "s3://ccat-products/maps/ccat/cube.fits"),
    ("s3://elsewhere/cube.fits", "/data", None, "s3://elsewhere/cube.fits"),
])
def test_copy_uri(path: str, base_path: str, host: str | None, uri: str) -> None:
    assert copy_uri(path, base_path, host) == uri
