"""The gap sensor of a CONTINUOUS pipeline, tick by tick, with real materializations in
between, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from ccat_assets.dagster_face.catalog import load_catalog
from ccat_assets.definitions import load_definitions
from ccat_assets.opsdb import ExecutedReductionStep, Pipeline, RunStatus
from ccat_assets.opsdb.session import session_scope
from ccat_assets.settings import get_settings
from sensors.pools import set_pool_limits
from tests.gaps.gapkit import (
    PIPELINE,
    apply_pipeline,
    fired,
    ingest,
    map_key,
    materialize,
    queue,
    run_requests,
    scan_key,
    tick,
)

SCAN_KEYS = [scan_key(s) for s in ("scan-001", "scan-002", "scan-003")]
NGC, ORION = map_key("NGC253", "CO43"), map_key("ORION", "CII")


def test_sensor_follows_the_data_through_the_dag(continuous: Path) -> None:
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        first = tick(defs, instance)
        assert fired(first) == [("calibrate", k) for k in SCAN_KEYS]
        assert set(instance.get_dynamic_partitions(f"{PIPELINE}__executed_obs_unit")) == set(
            SCAN_KEYS)
        assert set(instance.get_dynamic_partitions(f"{PIPELINE}__source+line")) == {NGC, ORION}
        request = first.run_requests[0]
        assert request.run_key.startswith(f"calibrate:{SCAN_KEYS[0]}:sha256:")
        assert request.asset_selection == [dg.AssetKey(["ccat", PIPELINE, "calibrate"])]
        assert request.partition_key == SCAN_KEYS[0]
        assert request.tags["dagster/priority"] == "5"
        assert request.tags["ccat/reason"] == "no_completed_run"
        [observation] = first.asset_events
        assert observation.asset_key == dg.AssetKey(["ccat", "grouping", "chai-archived"])
        assert observation.metadata["new_or_changed_packages"].value == 3
        assert json.loads(first.cursor)["package_id"] > 0

        queued = queue(defs, instance, first.run_requests)
        second = tick(defs, instance, first.cursor)
        assert fired(second) == []
        assert second.asset_events == []
        assert "in_flight" in second.skip_reason.skip_message

        for run_id in queued:  # the daemon would now start them; run them for real instead
            instance.delete_run(run_id)
        run_requests(defs, instance, first)
        third = tick(defs, instance, second.cursor)
        assert fired(third) == [("grid", NGC), ("grid", ORION)]
        run_requests(defs, instance, third)
        assert fired(tick(defs, instance, third.cursor)) == []

        ingest(continuous, [("scan-004", "NGC253", "CO43")], night="2026-11-02")
        arrival = tick(defs, instance, third.cursor)
        new_scan = scan_key("scan-004")
        assert fired(arrival) == [("calibrate", new_scan)]
        assert new_scan in instance.get_dynamic_partitions(f"{PIPELINE}__executed_obs_unit")
        assert arrival.asset_events[0].metadata["new_or_changed_packages"].value == 1
        run_requests(defs, instance, arrival)
        downstream = tick(defs, instance, arrival.cursor)
        assert fired(downstream) == [("grid", NGC)]
        assert downstream.run_requests[0].tags["ccat/reason"] == "inputs_changed"
        run_requests(defs, instance, downstream)
        assert fired(tick(defs, instance, downstream.cursor)) == []

    with session_scope() as session:
        runs = session.execute(sa.select(ExecutedReductionStep.sub_group_key,
                                         ExecutedReductionStep.status)).all()
    assert len(runs) == 3 + 2 + 1 + 1  # nothing ran twice for the same inputs
    assert {status for _, status in runs} == {RunStatus.COMPLETED}


def test_no_second_run_while_one_is_in_flight_in_the_ops_db(continuous: Path) -> None:
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        first = tick(defs, instance)
        run_requests(defs, instance, first)
        with session_scope() as session:
            run = session.scalar(sa.select(ExecutedReductionStep).filter_by(
                sub_group_key=SCAN_KEYS[0]))
            session.add(ExecutedReductionStep(
                reduction_step_id=run.reduction_step_id,
                reduction_software_version_id=run.reduction_software_version_id,
                reduction_step_config_id=run.reduction_step_config_id,
                sub_group_key=SCAN_KEYS[0], input_fingerprint="sha256:other",
                status=RunStatus.RUNNING))
        result = tick(defs, instance, first.cursor)
        assert fired(result) == [("grid", ORION)]  # NGC253 waits for scan-001's re-run


def test_runs_per_tick_are_bounded(continuous: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCAT_WORKFLOW_MANAGER_SENSOR_MAX_RUNS_PER_TICK", "2")
    get_settings.cache_clear()
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        first = tick(defs, instance)
        assert len(first.run_requests) == 2
        queue(defs, instance, first.run_requests)
        assert fired(tick(defs, instance, first.cursor)) == [("calibrate", SCAN_KEYS[2])]


def test_failed_run_is_retried_within_max_retries(served_env: Path, tmp_path: Path) -> None:
    apply_pipeline(tmp_path, calibrate={"config": {
        "command": ["false"], "parameters": {}, "resources": {"cpu": 1}}})
    ingest(tmp_path, [("scan-001", "NGC253", "CO43")])
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        first = tick(defs, instance)
        assert fired(first) == [("calibrate", SCAN_KEYS[0])]
        materialize(defs, instance, "calibrate", SCAN_KEYS[0], raise_on_error=False)
        retry = tick(defs, instance, first.cursor)
        assert fired(retry) == [("calibrate", SCAN_KEYS[0])]  # max_retries: 1
        assert retry.run_requests[0].run_key == first.run_requests[0].run_key + ":retry1"
        materialize(defs, instance, "calibrate", SCAN_KEYS[0], raise_on_error=False)
        result = tick(defs, instance, retry.cursor)
        assert fired(result) == []
        assert "retries_exhausted" in result.skip_reason.skip_message


def test_pools_get_the_steps_limits(continuous: Path) -> None:
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        result = tick(defs, instance)
        info = instance.event_log_storage.get_concurrency_info(f"ccat/{PIPELINE}/calibrate")
        assert info.slot_count == 2
        assert json.loads(result.cursor)["pools"]


@pytest.mark.parametrize("change", ["disabled", "elsewhere"])
def test_pipeline_not_served_here_is_skipped(continuous: Path, change: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    defs = load_definitions()
    if change == "disabled":
        with session_scope() as session:
            session.scalar(sa.select(Pipeline).filter_by(name=PIPELINE)).enabled = False
    else:
        monkeypatch.setenv("CCAT_WORKFLOW_MANAGER_PROCESSING_LOCATION_ID", "other-site")
        get_settings.cache_clear()
    with dg.instance_for_test() as instance:
        result = tick(defs, instance)
    assert fired(result) == []
    expected = "disabled" if change == "disabled" else "other-site"
    assert expected in result.skip_reason.skip_message


def test_sensor_status_follows_the_pipeline(continuous: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sensor = load_definitions().get_sensor_def(f"{PIPELINE}__gap_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    monkeypatch.setenv("CCAT_WORKFLOW_MANAGER_PROCESSING_LOCATION_ID", "other-site")
    get_settings.cache_clear()
    sensor = load_definitions().get_sensor_def(f"{PIPELINE}__gap_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED


def test_apply_can_set_pool_limits(continuous: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with session_scope() as session:
        catalog = load_catalog(session)
    assert "DAGSTER_HOME is not set" in set_pool_limits(catalog)
    home = tmp_path / "dagster-home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert set_pool_limits(catalog) == f"pool limits set: ccat/{PIPELINE}/calibrate=2"
    assert set_pool_limits(catalog) == "pool limits unchanged"
