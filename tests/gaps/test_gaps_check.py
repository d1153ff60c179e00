"""``ccat-wm check``: the pure comparison for every kind of disagreement (and the states that
are none), then the real thing on both databases: clean after Dagster runs, each
disagreement made by hand reported with exit 1 and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ccat_assets.cli import cli
from ccat_assets.consistency.rules import PipelineView, Row, StepView, compare
from ccat_assets.consistency.snapshot import check_pipelines
from ccat_assets.dagster_face.catalog import load_catalog
from ccat_assets.definitions import load_definitions
from ccat_assets.opsdb import ExecutedReductionStep, RunStatus
from ccat_assets.opsdb.session import session_scope
from sensors.partitions import sync_partitions
from tests.gaps.gapkit import PIPELINE, add_run, materialize, scan_key

S = RunStatus
A, B = "executed_obs_unit=a", "executed_obs_unit=b"


def view(*, rows: tuple[Row, ...] = (), sub_groups: frozenset[str] = frozenset({A}),
         partitions: frozenset[str] = frozenset({A}), versions: dict | None = None,
         failed: dict | None = None, run_states: dict | None = None,
         queued: dict | None = None) -> PipelineView:
    step = StepView("calibrate", "p__executed_obs_unit", sub_groups, partitions,
                    versions or {}, failed or {})
    return PipelineView("p", "g", (step,), rows, run_states or {}, queued or {})


def kinds(v: PipelineView) -> list[str]:
    return [f.kind for f in compare(v)]


def test_agreeing_records_have_no_findings() -> None:
    done = Row(1, "calibrate", A, S.COMPLETED, "fp1", "r1")
    assert kinds(view(rows=(done,), versions={A: "fp1"})) == []
    # a newer failed attempt after an older success: both records say so
    retry = Row(2, "calibrate", A, S.FAILED, "fp2", "r2")
    assert kinds(view(rows=(done, retry), versions={A: "fp1"}, failed={A: "r2"})) == []
    # a run that failed before claiming a row (no sub-group, upstream incomplete)
    assert kinds(view(rows=(done,), versions={A: "fp1"}, failed={A: "r9"})) == []
    # a row in flight behind a live run; nothing materialized, nothing completed
    live = Row(3, "calibrate", A, S.RUNNING, "fp3", "r3")
    assert kinds(view(rows=(done, live), versions={A: "fp1"},
                      run_states={"r3": "STARTED"})) == []


@pytest.mark.parametrize(("changes", "expected"), [
    ({"partitions": frozenset()}, ["no_partition"]),
    ({"partitions": frozenset({A, B})}, ["partition_without_sub_group"]),
    ({"rows": (Row(1, "calibrate", A, S.COMPLETED, "fp1", "r1"),)}, ["not_materialized"]),
    ({"rows": (Row(1, "calibrate", A, S.COMPLETED, "fp1", "r1"),
               Row(2, "calibrate", A, S.COMPLETED, "fp2", "r2")),
      "versions": {A: "fp1"}}, ["data_version_differs"]),
    ({"rows": (Row(1, "calibrate", A, S.COMPLETED, "fp1", "r1"),),
      "versions": {A: "fp1"}, "failed": {A: "r1"}}, ["completed_but_failed_in_dagster"]),
    ({"versions": {A: "fp1"}}, ["materialized_without_completed_run"]),
    ({"rows": (Row(1, "calibrate", A, S.PENDING, "fp1", None),)},
     ["in_flight_without_dagster_run"]),
    ({"rows": (Row(1, "calibrate", A, S.RUNNING, "fp1", "gone"),)},
     ["in_flight_unknown_dagster_run"]),
    ({"rows": (Row(1, "calibrate", A, S.SUBMITTED, "fp1", "r1"),),
      "run_states": {"r1": "FAILURE"}}, ["in_flight_dagster_run_ended"]),
    ({"queued": {"r7": (("calibrate", A),)}}, ["queued_without_row"]),
])
def test_each_disagreement_is_found_with_a_remedy(changes: dict, expected: list[str]) -> None:
    findings = compare(view(**changes))
    assert [f.kind for f in findings] == expected
    assert all(f.remedy and f.detail for f in findings)


@pytest.fixture
def reduced(manual: Path) -> dg.DagsterInstance:
    """Two scans of the MANUAL pipeline reduced through Dagster; every sub-group a partition."""
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        for scan in ("scan-001", "scan-002"):
            assert materialize(defs, instance, "calibrate", scan_key(scan)).success
        with session_scope() as session:
            sync_partitions(instance, session, load_catalog(session))
        yield instance


def findings(instance: dg.DagsterInstance) -> list[tuple[str, str, str | None]]:
    with session_scope() as session:
        return [(f.kind, f.step, f.key) for f in check_pipelines(instance, session)]


def test_check_is_clean_after_dagster_runs_and_names_each_break(
        reduced: dg.DagsterInstance) -> None:
    instance = reduced
    assert findings(instance) == []
    one, two, three = (scan_key(s) for s in ("scan-001", "scan-002", "scan-003"))
    with session_scope() as session:
        row = session.scalar(sa.select(ExecutedReductionStep).where(
            ExecutedReductionStep.sub_group_key == one))
        row.input_fingerprint = "sha256:edited"
        session.execute(sa.delete(ExecutedReductionStep).where(
            ExecutedReductionStep.sub_group_key == two))
    add_run("calibrate", three, RunStatus.RUNNING, dagster_run_id="gone")
    instance.add_dynamic_partitions(f"{PIPELINE}__source+line", ["source=NOWHERE__line=X"])
    instance.delete_dynamic_partition(f"{PIPELINE}__executed_obs_unit", three)
    assert sorted(findings(instance)) == sorted([
        ("data_version_differs", "calibrate", one),
        ("materialized_without_completed_run", "calibrate", two),
        ("in_flight_unknown_dagster_run", "calibrate", three),
        ("no_partition", "calibrate", three),
        ("partition_without_sub_group", "grid", "source=NOWHERE__line=X"),
    ])


def test_cli_exit_status_and_json(manual: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "dagster-home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    runner = CliRunner()
    result = runner.invoke(cli, ["check", PIPELINE, "--json"])
    assert result.exit_code == 1, result.output
    found = json.loads(result.output)
    assert {(f["kind"], f["key"]) for f in found} >= {("no_partition", scan_key("scan-001"))}
    assert all(f["remedy"] for f in found)
    assert runner.invoke(cli, ["partitions", "sync", PIPELINE]).exit_code == 0
    clean = runner.invoke(cli, ["check"])
    assert clean.exit_code == 0, clean.output
    assert "consistent" in clean.output
    unknown = runner.invoke(cli, ["check", "no_such_pipeline"])
    assert unknown.exit_code == 1 and "no pipeline no_such_pipeline" in unknown.output
