"""Loading a pipeline's gap state from the ops-db: the executor's fingerprints, set-based
queries, config and version changes, and the cheap change check, on both databases."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from ccat_assets.automation.gaps import Decision, Reason, evaluate
from ccat_assets.automation.gapstate import StateCache, load_pipeline_state, read_watermark
from ccat_assets.automation.gapstate.load import load_pipeline_info
from ccat_assets.automation.inputs import plan_inputs
from ccat_assets.definitions import load_definitions
from ccat_assets.opsdb import ExecutedReductionStep, RunStatus
from ccat_assets.opsdb.session import get_engine, session_scope
from ccat_assets.opsdb.types import utcnow
from ccat_assets.settings import get_settings
from tests.factories import pipeline_spec
from tests.gaps.gapkit import (
    PIPELINE,
    apply_pipeline,
    apply_versions,
    ingest,
    map_key,
    materialize,
    scan_key,
)

NGC = map_key("NGC253", "CO43")


def decisions() -> dict[tuple[str, str], Decision]:
    with session_scope() as session:
        state = load_pipeline_state(session, PIPELINE)
    return {(d.step, d.key): d for d in evaluate(state, utcnow())}


def executor_fingerprint(step: str, key: str) -> str:
    with session_scope() as session:
        return plan_inputs(session, PIPELINE, step, key, get_settings().pipelines_dir).fingerprint


@contextmanager
def counted_statements() -> Iterator[list[str]]:
    statements: list[str] = []
    engine = get_engine()

    def count(conn, cursor, statement, *args) -> None:  # noqa: ANN001
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def test_fingerprints_are_the_executors(continuous: Path) -> None:
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        for scan in ("scan-001", "scan-002"):
            materialize(defs, instance, "calibrate", scan_key(scan))
    found = decisions()
    for scan in ("scan-001", "scan-002"):
        assert found[("calibrate", scan_key(scan))].reason == Reason.UP_TO_DATE
    unrun = found[("calibrate", scan_key("scan-003"))]
    assert unrun.fingerprint == executor_fingerprint("calibrate", scan_key("scan-003"))
    grid = found[("grid", NGC)]
    assert grid.fire and grid.reason == Reason.NO_COMPLETED_RUN
    assert grid.fingerprint == executor_fingerprint("grid", NGC)
    assert found[("grid", map_key("ORION", "CII"))].reason == Reason.UPSTREAM_INCOMPLETE


def test_loading_is_set_based(continuous: Path) -> None:
    with counted_statements() as small:
        decisions()
    ingest(continuous, [(f"scan-1{i:02d}", f"SRC{i}", "CO43") for i in range(20)],
           night="2026-11-03")
    with counted_statements() as large:
        found = decisions()
    assert len(found) == 23 + 22  # scans + source+line groups
    assert len(large) == len(small) <= 12


def test_config_change_reprocesses_with_its_reason(continuous: Path) -> None:
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        materialize(defs, instance, "calibrate", scan_key("scan-001"))
    apply_pipeline(continuous, calibrate={"config": {
        **pipeline_spec(continuous / "processing")["pipelines"][0]["steps"][0]["config"],
        "parameters": {"tag": "v2"}}})
    decision = decisions()[("calibrate", scan_key("scan-001"))]
    assert decision.fire and decision.reason == Reason.CONFIG_CHANGED
    assert decision.details["changed"] == ["config"]
    assert decision.fingerprint == executor_fingerprint("calibrate", scan_key("scan-001"))


def test_compatible_policy_reprocesses_only_for_a_new_major(continuous: Path) -> None:
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        materialize(defs, instance, "calibrate", scan_key("scan-001"))
    apply_versions(continuous, ["1.0.0", "1.3.0"])
    assert decisions()[("calibrate", scan_key("scan-001"))].reason == Reason.UP_TO_DATE
    apply_versions(continuous, ["1.0.0", "1.3.0", "2.0.0"])
    decision = decisions()[("calibrate", scan_key("scan-001"))]
    assert decision.fire and decision.reason == Reason.VERSION_CHANGED
    assert decision.fingerprint == executor_fingerprint("calibrate", scan_key("scan-001"))


def test_exact_policy_reprocesses_when_the_pin_moves(served_env: Path, tmp_path: Path) -> None:
    apply_versions(tmp_path, ["1.0.0", "1.1.0"], version_policy="exact", pinned_version="1.0.0")
    ingest(tmp_path, [("scan-001", "NGC253", "CO43")])
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        materialize(defs, instance, "calibrate", scan_key("scan-001"))
    assert decisions()[("calibrate", scan_key("scan-001"))].reason == Reason.UP_TO_DATE
    apply_versions(tmp_path, ["1.0.0", "1.1.0"], version_policy="exact", pinned_version="1.1.0")
    decision = decisions()[("calibrate", scan_key("scan-001"))]
    assert decision.reason == Reason.VERSION_CHANGED
    assert decision.fingerprint == executor_fingerprint("calibrate", scan_key("scan-001"))


def _watermark():
    with session_scope() as session:
        return read_watermark(session, load_pipeline_info(session, PIPELINE).id)


def test_watermark_moves_with_packages_runs_and_specs(continuous: Path) -> None:
    before = _watermark()
    assert _watermark() == before
    ingest(continuous, [("scan-004", "NGC253", "CO43")], night="2026-11-02")
    after_package = _watermark()
    assert after_package.packages != before.packages
    assert after_package.runs == before.runs
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        materialize(defs, instance, "calibrate", scan_key("scan-004"))
    after_run = _watermark()
    assert after_run.runs != after_package.runs
    with session_scope() as session:
        run = session.scalar(sa.select(ExecutedReductionStep))
        session.add(ExecutedReductionStep(
            reduction_step_id=run.reduction_step_id,
            reduction_software_version_id=run.reduction_software_version_id,
            reduction_step_config_id=run.reduction_step_config_id, sub_group_key="x",
            input_fingerprint="sha256:x", status=RunStatus.PENDING))
    pending = _watermark()
    with session_scope() as session:
        row = session.scalar(sa.select(ExecutedReductionStep).filter_by(sub_group_key="x"))
        row.status = RunStatus.STAGING_DATA
    assert _watermark().runs != pending.runs
    apply_pipeline(continuous, grid={"cooldown_seconds": 60})
    assert _watermark().definitions != after_run.definitions


def test_cache_rereads_only_what_changed(continuous: Path) -> None:
    cache = StateCache(full_reload_seconds=3600)
    now = utcnow()

    def evaluate_at(at: dt.datetime):
        with session_scope() as session:
            return cache.evaluate(("db", PIPELINE), session=session, name=PIPELINE,
                                  mark=_watermark(), now=at)

    first = evaluate_at(now)
    assert first.reloaded == {"definition", "grains", "runs"}
    again = evaluate_at(now + dt.timedelta(seconds=30))
    assert again.reloaded == set() and not again.reevaluated
    assert again.decisions == first.decisions
    ingest(continuous, [("scan-004", "NGC253", "CO43")], night="2026-11-02")
    arrived = evaluate_at(now + dt.timedelta(seconds=60))
    assert arrived.reloaded == {"grains"}
    assert len(arrived.decisions) == len(first.decisions) + 1
    with dg.instance_for_test() as instance:
        materialize(load_definitions(), instance, "calibrate", scan_key("scan-004"))
    ran = evaluate_at(now + dt.timedelta(seconds=90))
    assert ran.reloaded == {"runs"}
    assert {(d.step, d.key): d.reason for d in ran.decisions}[
        ("calibrate", scan_key("scan-004"))] == Reason.UP_TO_DATE
    apply_pipeline(continuous, grid={"cooldown_seconds": 60})
    assert evaluate_at(now + dt.timedelta(seconds=120)).reloaded == {
        "definition", "grains", "runs"}
    assert evaluate_at(now + dt.timedelta(hours=2)).reloaded == {  # the periodic full reload
        "definition", "grains", "runs"}
    with session_scope() as session:
        fresh = evaluate(load_pipeline_state(session, PIPELINE), now + dt.timedelta(hours=2))
    assert evaluate_at(now + dt.timedelta(hours=2)).decisions == fresh
