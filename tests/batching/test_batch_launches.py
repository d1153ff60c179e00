"""How fired gaps become runs: ``plan_launches`` (pure) and the gap sensor with a batched
step (real Dagster instance, both databases): batches of ``batch_size`` members of one step,
launched as the step's batch job, counted as in flight while queued, run for real."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from ccat_assets.automation.gap_batches import plan_launches
from ccat_assets.automation.gaps import Decision, Reason
from ccat_assets.dagster_face.batch_job import batch_job_name, batch_op_name
from ccat_assets.dagster_face.catalog import load_catalog
from ccat_assets.definitions import load_definitions
from ccat_assets.opsdb.session import session_scope
from sensors.pools import pool_limits
from sensors.requests import batch_run_key
from tests.gaps.gapkit import PIPELINE, apply_pipeline, fired, ingest, scan_key, tick

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def _gap(step: str, key: str, minute: int, attempt: int = 0) -> Decision:
    return Decision(step=step, key=key, fire=True, reason=Reason.NO_COMPLETED_RUN,
                    gap=Reason.NO_COMPLETED_RUN, fingerprint=f"sha256:{key}",
                    gap_since=T0 + dt.timedelta(minutes=minute), attempt=attempt)


def _shape(launches: list[list[Decision]]) -> list[list[str]]:
    return [[f"{d.step}/{d.key}" for d in launch] for launch in launches]


def test_batches_fill_per_step_oldest_first_and_the_limit_counts_runs() -> None:
    fired_ = [_gap("cal", f"s{i}", i) for i in range(7)] + [_gap("grid", "m0", 2)]
    launches = plan_launches(fired_, batch_sizes={"cal": 3}, limit=10,
                             step_order=["cal", "grid"])
    assert _shape(launches) == [["cal/s0", "cal/s1", "cal/s2"], ["grid/m0"],
                                ["cal/s3", "cal/s4", "cal/s5"], ["cal/s6"]]
    limited = plan_launches(fired_, batch_sizes={"cal": 3}, limit=2, step_order=["cal", "grid"])
    assert _shape(limited) == [["cal/s0", "cal/s1", "cal/s2"], ["grid/m0"]]
    single = plan_launches(fired_, batch_sizes={}, limit=3, step_order=["cal", "grid"])
    assert _shape(single) == [["cal/s0"], ["cal/s1"], ["cal/s2"]]


def test_batch_run_key_is_the_set_of_member_keys() -> None:
    a = [_gap("cal", "s0", 0), _gap("cal", "s1", 1)]
    assert batch_run_key(a) == batch_run_key(list(reversed(a)))
    assert batch_run_key(a) != batch_run_key([a[0], _gap("cal", "s1", 1, attempt=1)])
    assert batch_run_key(a).startswith("cal:batch2:")


def test_gap_sensor_launches_batches_and_counts_their_members_in_flight(
    served_env: Path, tmp_path: Path,
) -> None:
    apply_pipeline(tmp_path, trigger={"type": "CONTINUOUS"}, calibrate={"batch_size": 2})
    scans = [(f"scan-{i:03d}", "NGC253", "CO43") for i in range(5)]
    ingest(tmp_path, scans)
    defs = load_definitions()
    job_name = batch_job_name(PIPELINE, "calibrate")
    keys = [scan_key(s) for s, _, _ in scans]
    with dg.instance_for_test() as instance:
        first = tick(defs, instance)
        requests = first.run_requests
        assert [r.job_name for r in requests] == [job_name] * 3
        op_name = batch_op_name(PIPELINE, "calibrate")
        members = [r.run_config["ops"][op_name]["config"]["sub_groups"] for r in requests]
        assert members == [keys[0:2], keys[2:4], keys[4:5]]
        assert requests[0].tags["ccat/batch"] == "true"
        assert requests[0].tags["ccat/batch_size"] == "2"
        assert requests[0].tags["dagster/priority"] == "5"

        # queued batch runs: their members are in flight, nothing fires again
        job = defs.resolve_job_def(job_name)
        queued = [instance.create_run_for_job(
            job_def=job, run_config=r.run_config, tags=dict(r.tags),
            status=dg.DagsterRunStatus.NOT_STARTED) for r in requests]
        again = tick(defs, instance, first.cursor)
        assert fired(again) == []
        assert "5 in_flight" in again.skip_reason.skip_message

        # run them for real; then the downstream (unbatched) step fires, one run per gap
        for run in queued:
            instance.delete_run(run.run_id)
        for request in requests:
            assert job.execute_in_process(instance=instance, run_config=request.run_config,
                                          tags=dict(request.tags)).success
        assert instance.get_materialized_partitions(
            dg.AssetKey(["ccat", PIPELINE, "calibrate"])) == set(keys)
        downstream = tick(defs, instance, again.cursor)
        [grid] = downstream.run_requests
        assert grid.job_name == f"{PIPELINE}__source_line"
        assert grid.asset_selection == [dg.AssetKey(["ccat", PIPELINE, "grid"])]
        assert grid.tags["ccat/step"] == "grid"


def test_a_batched_step_pool_holds_one_run(served_env: Path, tmp_path: Path) -> None:
    """The batch's array throttle is max_concurrent_runs; one batch run at a time keeps the
    step's executing jobs within that limit."""
    apply_pipeline(tmp_path, calibrate={"batch_size": 10, "max_concurrent_runs": 3},
                   grid={"max_concurrent_runs": 2})
    with session_scope() as session:
        limits = pool_limits(load_catalog(session))
    assert limits == {f"ccat/{PIPELINE}/calibrate": 1, f"ccat/{PIPELINE}/grid": 2}
