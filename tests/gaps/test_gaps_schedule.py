"""CRON pipelines: one schedule per grain, evaluating the same gap rule at the cron ticks."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ccat_assets.definitions import load_definitions
from tests.gaps.gapkit import PIPELINE, SCANS, apply_pipeline, ingest, run_requests, scan_key

SCAN_SCHEDULE = f"{PIPELINE}__executed_obs_unit__gap_schedule"
MAP_SCHEDULE = f"{PIPELINE}__source_line__gap_schedule"


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, name: str):
    context = dg.build_schedule_context(instance=instance,
                                        repository_def=defs.get_repository_def())
    return defs.get_repository_def().get_schedule_def(name).evaluate_tick(context)


def test_schedules_per_grain_launch_their_steps(served_env: Path, tmp_path: Path) -> None:
    apply_pipeline(tmp_path, trigger={"type": "CRON", "cron": "0 3 * * *"})
    ingest(tmp_path, SCANS)
    defs = load_definitions()
    schedules = {s.name: s for s in defs.get_repository_def().schedule_defs}
    assert set(schedules) == {SCAN_SCHEDULE, MAP_SCHEDULE}
    assert schedules[SCAN_SCHEDULE].cron_schedule == "0 3 * * *"
    assert schedules[SCAN_SCHEDULE].default_status == dg.DefaultScheduleStatus.RUNNING
    assert not any(s.name.endswith("__gap_sensor")
                   for s in defs.get_repository_def().sensor_defs)
    with dg.instance_for_test() as instance:
        scans = _tick(defs, instance, SCAN_SCHEDULE)
        keys = [r.partition_key for r in scans.run_requests]
        assert keys == [scan_key(s) for s, _, _ in SCANS]
        assert set(instance.get_dynamic_partitions(f"{PIPELINE}__executed_obs_unit")) == set(keys)
        assert {r.tags["ccat/step"] for r in scans.run_requests} == {"calibrate"}
        maps = _tick(defs, instance, MAP_SCHEDULE)
        assert maps.run_requests == [] and "upstream_incomplete" in maps.skip_message
        run_requests(defs, instance, scans)
        maps = _tick(defs, instance, MAP_SCHEDULE)
        assert {r.tags["ccat/step"] for r in maps.run_requests} == {"grid"}
        assert len(maps.run_requests) == 2


def test_a_batched_step_has_a_schedule_of_its_own_launching_batches(
        served_env: Path, tmp_path: Path) -> None:
    """A CRON pipeline honours ``batch_size`` as a gap sensor does: the batched step's gaps
    are one run of its batch job, and its grain's schedule (only that step) is gone."""
    apply_pipeline(tmp_path, trigger={"type": "CRON", "cron": "0 3 * * *"},
                   calibrate={"batch_size": 2})
    ingest(tmp_path, SCANS)
    defs = load_definitions()
    batch_schedule = f"{PIPELINE}__calibrate__batch__gap_schedule"
    schedules = {s.name: s for s in defs.get_repository_def().schedule_defs}
    assert set(schedules) == {batch_schedule, MAP_SCHEDULE}
    assert schedules[batch_schedule].job_name == f"{PIPELINE}__calibrate__batch"
    assert schedules[batch_schedule].cron_schedule == "0 3 * * *"
    with dg.instance_for_test() as instance:
        batches = _tick(defs, instance, batch_schedule)
        members = [r.run_config["ops"][f"{PIPELINE}__calibrate__members"]["config"]
                   ["sub_groups"] for r in batches.run_requests]
        assert [len(m) for m in members] == [2] * (len(SCANS) // 2) + [1] * (len(SCANS) % 2)
        assert sorted(k for m in members for k in m) == sorted(scan_key(s) for s, _, _ in SCANS)
        assert {r.tags["ccat/batch"] for r in batches.run_requests} == {"true"}
        assert set(instance.get_dynamic_partitions(f"{PIPELINE}__executed_obs_unit")) == {
            scan_key(s) for s, _, _ in SCANS}
        maps = _tick(defs, instance, MAP_SCHEDULE)
        assert maps.run_requests == [] and "upstream_incomplete" in maps.skip_message
