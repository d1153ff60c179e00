"""Logs are never inputs: a log a program keeps next to its products
(``$WORKFLOW_OUTPUT_DIR/logs/``, so ``workspace/<step>/logs/`` of an intermediate step) is a
LOG product, and the next step neither stages, lists nor counts it, nor does lineage or PROV
say it was used. On both databases, through real Dagster runs of the test pipeline; rows an
older collector recorded as INTERMEDIATE are retyped by migration 0002.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ccat_assets.automation.inputs import plan_inputs
from ccat_assets.definitions import load_definitions
from ccat_assets.opsdb import (
    DataProduct,
    DataProductType,
    ExecutedReductionStep,
    RunStatus,
    migrate,
    run_input_data_product,
)
from ccat_assets.opsdb.session import session_scope
from ccat_assets.results.collect import collect_run
from ccat_assets.results.contract import RunLayout, workspace_product_type
from ccat_assets.results.prov_export import product_id, to_prov_json
from ccat_assets.results.provenance import load_lineage
from tests.results.kit import (
    PIPELINE,
    apply_and_ingest,
    make_run,
    map_key,
    materialize,
    package_ids,
    register_partitions,
    scan_key,
    write,
)

T = DataProductType
SCAN = ("scan-001", "NGC253", "CO43")
NGC = map_key("NGC253", "CO43")
WORKSPACE_LOG = "workspace/calibrate/logs/reduce-copy.log"


@pytest.mark.parametrize(("path", "expected"), [
    ("logs/reduce-copy.log", T.LOG),
    ("logs/deeper/trace.txt", T.LOG),
    ("cal/scan.h5", T.INTERMEDIATE),
    ("logs", T.INTERMEDIATE),                   # a file named logs is no logs folder
    ("cal/logs/x.log", T.INTERMEDIATE),         # only the folder the contract names
    ("catalogs/a.fits", T.INTERMEDIATE),
])
def test_workspace_product_type(path: str, expected: DataProductType) -> None:
    assert workspace_product_type(PurePosixPath(path)) == expected


# --- through Dagster: step 1 writes a log in its workspace, step 2 must not see it -----------

def _run(session: Session, step_name: str, key: str) -> ExecutedReductionStep:
    return session.scalar(
        sa.select(ExecutedReductionStep).join(ExecutedReductionStep.step)
        .where(ExecutedReductionStep.sub_group_key == key,
               ExecutedReductionStep.status == RunStatus.COMPLETED)
        .filter_by(name=step_name))


def _used_ids(session: Session, run_id: int) -> set[int]:
    return set(session.scalars(sa.select(run_input_data_product.c.data_product_id).where(
        run_input_data_product.c.executed_reduction_step_id == run_id)))


def _staged(layout: RunLayout) -> set[str]:
    base = layout.products_input_dir
    return {(Path(d) / f).relative_to(base).as_posix()
            for d, _dirs, files in os.walk(base) for f in files}


def _prov_used(graph) -> set[str]:
    return {r["prov:entity"] for r in to_prov_json(graph).get("used", {}).values()}


def test_a_log_in_the_workspace_is_never_an_input_downstream(
        ccat_env: Path, tmp_path: Path) -> None:
    apply_and_ingest(tmp_path, scans=[SCAN], calibrate_params={"log_with_products": True})
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        register_partitions(instance, [SCAN])
        assert materialize(defs, instance, "calibrate", scan_key("scan-001")).success
        assert materialize(defs, instance, "grid", NGC).success

    with session_scope() as s:
        calibrate = _run(s, "calibrate", scan_key("scan-001"))
        types = {p.relative_path: T(p.data_product_type) for p in calibrate.products}
        assert types[WORKSPACE_LOG] == T.LOG
        log_id = next(p.id for p in calibrate.products if p.relative_path == WORKSPACE_LOG)
        science = {p.id: p.relative_path for p in calibrate.products
                   if p.data_product_type == T.INTERMEDIATE}
        assert sorted(science.values()) == [
            "workspace/calibrate/science/out-0000.txt", "workspace/calibrate/science/out-0001.txt"]

        grid = _run(s, "grid", NGC)
        assert _used_ids(s, grid.id) == set(science)
        planned = plan_inputs(s, PIPELINE, "grid", NGC, Path(grid.run_dir).parents[3])
        assert {u.id for u in planned.upstream} == set(science)
        layout = RunLayout(root=Path(grid.run_dir), step="grid")
        manifest = json.loads(layout.manifest_path.read_text())
        assert sorted(p["relative_path"] for p in manifest["inputs"]["products"]) == sorted(
            science.values())
        assert _staged(layout) == {f"calibrate/{scan_key('scan-001')}/{rel}"
                                   for rel in science.values()}
        # reduce_copy writes one science file per input: 2 raw files + 2 upstream products.
        outputs = [p for p in grid.products if p.data_product_type == T.SCIENCE]
        assert len(outputs) == 4

        graph = load_lineage(s, outputs[0].id)
        assert log_id not in graph.products
        assert graph.run_of(outputs[0].id).input_product_ids == tuple(sorted(science))
        used = _prov_used(graph)
        assert product_id(log_id) not in used
        assert {product_id(pid) for pid in science} <= used


# --- a failed run keeps the logs it wrote next to its products ------------------------------

def test_a_failed_run_keeps_its_workspace_logs(session, applied, location_id) -> None:
    run, layout = make_run(session, "calibrate", scan_key("scan-001"), applied,
                           raw_ids=package_ids(session, "scan-001"))
    write(layout.workspace_dir / "cal.h5", "half written")
    write(layout.workspace_dir / "logs" / "reduce-copy.log", "failed at scan 3")
    write(layout.logs_dir / "stderr.log", "Traceback")

    result = collect_run(session, run, layout, is_final=False, logs_only=True,
                         processing_location_id=location_id)

    assert {(p.relative_path, T(p.data_product_type)) for p in result.products} == {
        ("workspace/calibrate/logs/reduce-copy.log", T.LOG), ("logs/stderr.log", T.LOG)}


def test_a_failed_final_run_keeps_its_output_logs(session, applied, location_id) -> None:
    run, layout = make_run(session, "grid", NGC, applied,
                           raw_ids=package_ids(session, "scan-001"))
    write(layout.output_dir / "science" / "cube.fits", "half written")
    write(layout.output_dir / "logs" / "grid.log", "out of memory")

    result = collect_run(session, run, layout, is_final=True, logs_only=True,
                         processing_location_id=location_id)

    assert [(p.relative_path, T(p.data_product_type)) for p in result.products] == [
        ("output/logs/grid.log", T.LOG)]


# --- rows an older collector recorded: migration 0002 -------------------------------------

def _old_style_rows(session: Session, base: Path, location_id: int) -> dict[str, int]:
    """calibrate scan-001 -> grid NGC253/CO43 as the collector before 0002 left them: the
    workspace log INTERMEDIATE and among grid's inputs. Product ids by relative path."""
    raw = package_ids(session, "scan-001")
    cal, layout = make_run(session, "calibrate", scan_key("scan-001"), base, raw_ids=raw)
    write(layout.workspace_dir / "cal.h5", "calibrated")
    write(layout.workspace_dir / "logs" / "chai-calibration.log", "done")
    write(layout.workspace_dir / "cal" / "logs" / "kept.txt", "an intermediate")
    write(layout.logs_dir / "stdout.log", "ok")
    products = collect_run(session, cal, layout, is_final=False,
                           processing_location_id=location_id).products
    ids = {p.relative_path: p.id for p in products}
    session.execute(sa.update(DataProduct)
                    .where(DataProduct.id == ids["workspace/calibrate/logs/chai-calibration.log"])
                    .values(data_product_type=T.INTERMEDIATE))
    cal.status = RunStatus.COMPLETED
    consumed = [pid for rel, pid in ids.items() if rel.startswith("workspace/")]
    grid, layout = make_run(session, "grid", NGC, base, raw_ids=raw, product_ids=consumed)
    write(layout.output_dir / "science" / "cube.fits", "cube")
    (cube,) = [p for p in collect_run(session, grid, layout, is_final=True,
                                      processing_location_id=location_id).products
               if p.data_product_type == T.SCIENCE]
    grid.status = RunStatus.COMPLETED
    session.commit()
    return {**ids, "cube": cube.id}


def _types(session: Session, ids: dict[str, int]) -> dict[str, DataProductType]:
    session.expire_all()
    return {rel: T(session.get(DataProduct, pid).data_product_type) for rel, pid in ids.items()}


def test_migration_retypes_workspace_logs_recorded_as_intermediates(
        session, applied, location_id, db_url: str) -> None:
    ids = _old_style_rows(session, applied, location_id)
    log = ids["workspace/calibrate/logs/chai-calibration.log"]
    # As it was: the log is an input of grid, in lineage and in PROV.
    assert log in load_lineage(session, ids["cube"]).products
    assert product_id(log) in _prov_used(load_lineage(session, ids["cube"]))
    session.rollback()

    # back to revision 0001 (later revisions undo their schema; 0002's data stays as the old
    # collector wrote it), then up again: 0002 retypes the rows
    migrate.downgrade(db_url, "0001")
    migrate.upgrade(db_url)

    assert _types(session, ids) == {
        "workspace/calibrate/cal.h5": T.INTERMEDIATE,
        "workspace/calibrate/logs/chai-calibration.log": T.LOG,
        "workspace/calibrate/cal/logs/kept.txt": T.INTERMEDIATE,
        "logs/stdout.log": T.LOG,
        "cube": T.SCIENCE,
    }
    graph = load_lineage(session, ids["cube"])
    assert log not in graph.products
    assert graph.run_of(ids["cube"]).input_product_ids == tuple(sorted(
        (ids["workspace/calibrate/cal.h5"], ids["workspace/calibrate/cal/logs/kept.txt"])))
    assert product_id(log) not in _prov_used(graph)
    planned = plan_inputs(session, PIPELINE, "grid", NGC, applied)
    assert log not in {u.id for u in planned.upstream}
    migrate.upgrade(db_url)  # at head already: nothing happens, nothing breaks
    assert _types(session, ids)["workspace/calibrate/logs/chai-calibration.log"] == T.LOG
