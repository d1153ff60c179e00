"""Every launch path obeys the same rules (both databases, a MANUAL pipeline, in process).

- A run for a key Dagster does not know yet does the work once and is recorded, with the
  key registered as a partition first (it used to run the whole reduction and then fail
  with "Nonexistent partition keys").
- A run for a key that is no sub-group fails before anything is staged or submitted.
- A requested materialization of a pair COMPLETED for its current inputs re-reports that
  run: no new row, no job, no products; ``ccat/force=true`` reruns it.
- A queued run has its PENDING rows in the ops-db; its worker claims them (no second row);
  gap evaluation counts them in flight; a canceled queued run's rows end CANCELLED.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from dagster._core.execution.api import execute_run

from ccat_assets.dagster_face.catalog import PipelineDef, load_catalog
from ccat_assets.definitions import load_definitions
from ccat_assets.execution.execute import Busy, Claimed, ExecutionServices, claim_run, fail_run
from ccat_assets.execution.queued_rows import QueuedPair, record_queued
from ccat_assets.opsdb import DataProduct, ExecutedReductionStep, RawDataPackage, RunStatus
from ccat_assets.opsdb.session import session_scope
from ccat_assets.settings import get_settings
from sensors.queued_rows import record_queued_runs
from sensors.run_status import settle_runs
from tests.factories import pipeline_spec, write_spec
from tests.gaps.gapkit import (
    PIPELINE,
    SCANS,
    ccat,
    map_key,
    materialize,
    queue,
    scan_key,
)
from tests.gaps.launchkit import reconstructable_job
from tests.reliability.conftest import local_services

CALIBRATE = dg.AssetKey(["ccat", PIPELINE, "calibrate"])
SCAN_PARTITIONS = f"{PIPELINE}__executed_obs_unit"


def rows(step: str = "calibrate") -> list[ExecutedReductionStep]:
    with session_scope() as session:
        return list(session.scalars(
            sa.select(ExecutedReductionStep).join(ExecutedReductionStep.step)
            .where(ExecutedReductionStep.step.has(name=step))
            .order_by(ExecutedReductionStep.id)))


def product_count() -> int:
    with session_scope() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(DataProduct)) or 0


def job_dirs() -> int:
    """Jobs the local backend was given (one directory each; ``.slots`` is its semaphore)."""
    jobs = get_settings().jobs_dir
    return len([d for d in jobs.iterdir() if not d.name.startswith(".")]) if jobs.exists() else 0


def launched_run(instance: dg.DagsterInstance, key: str,
                 tags: dict[str, str] | None = None) -> dg.JobExecutionResult:
    """A run of ``calibrate`` for ``key`` executed as a launched run worker executes it."""
    return dg.execute_job(reconstructable_job(), instance, raise_on_error=False,
                          asset_selection=[CALIBRATE],
                          tags={"dagster/partition": key, **(tags or {})})


def step_failure(result: dg.JobExecutionResult) -> str:
    """What the failed steps said (their dg.Failure descriptions and errors)."""
    said = []
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            said.append(data.user_failure_data.description if data.user_failure_data
                        else (data.error.message if data.error else event.message or ""))
    return "\n".join(said)


def test_run_for_a_key_dagster_does_not_know_yet_is_recorded_once(manual: Path) -> None:
    key = scan_key("scan-001")
    with dg.instance_for_test() as instance:
        assert instance.get_dynamic_partitions(SCAN_PARTITIONS) == []
        result = launched_run(instance, key)
        assert result.success, step_failure(result)
        assert instance.has_dynamic_partition(SCAN_PARTITIONS, key)
        assert instance.get_materialized_partitions(CALIBRATE) == {key}
    assert [(r.sub_group_key, RunStatus(r.status)) for r in rows()] == [
        (key, RunStatus.COMPLETED)]
    assert job_dirs() == 1


def test_run_for_a_key_that_is_no_sub_group_fails_before_any_work(manual: Path) -> None:
    with dg.instance_for_test() as instance:
        result = launched_run(instance, "executed_obs_unit=scan-999")
        assert not result.success
        message = step_failure(result)
        assert "'executed_obs_unit=scan-999' is not a current sub-group" in message
        assert "nothing was staged or submitted" in message
        assert "ccat-wm grouping preview" in message
        assert not instance.has_dynamic_partition(SCAN_PARTITIONS, "executed_obs_unit=scan-999")
    assert rows() == []
    assert job_dirs() == 0


def test_materializing_an_up_to_date_pair_reports_the_completed_run(manual: Path) -> None:
    key = scan_key("scan-002")
    with dg.instance_for_test() as instance:
        first = materialize(load_definitions(), instance, "calibrate", key)
        assert first.success
        products, jobs = product_count(), job_dirs()
        (done,) = rows()
        again = launched_run(instance, key)  # a retry, a backfill or the UI: same code
        assert again.success
        assert ([r.id for r in rows()], product_count(), job_dirs()) == (
            [done.id], products, jobs)
        latest = instance.get_latest_materialization_event(CALIBRATE)
        assert latest is not None and latest.run_id == again.run_id
        metadata = latest.asset_materialization.metadata
        assert metadata["ops-db run id"].value == done.id
        assert metadata["exit_code"] == dg.MetadataValue.int(0)  # not 0.0
        assert metadata["dagster_run_id"].value == first.run_id
        assert "Nothing ran" in metadata["reused_run"].value
        assert latest.asset_materialization.tags["dagster/data_version"] == \
            done.input_fingerprint

        forced = launched_run(instance, key, tags={"ccat/force": "true"})
        assert forced.success, step_failure(forced)
    assert [RunStatus(r.status) for r in rows()] == [RunStatus.COMPLETED] * 2
    assert job_dirs() == jobs + 1


def queue_calibrate(instance: dg.DagsterInstance, key: str) -> tuple[str, list[PipelineDef]]:
    """A calibrate run of ``key`` queued (not started), and the catalog the sensor reads."""
    with session_scope() as session:
        catalog = load_catalog(session)
    (run_id,) = queue(load_definitions(), instance, [dg.RunRequest(
        partition_key=key, asset_selection=[CALIBRATE])])
    return run_id, catalog


def test_queued_run_has_its_pending_row_and_its_worker_claims_it(manual: Path) -> None:
    key = scan_key("scan-003")
    with dg.instance_for_test() as instance:
        run_id, catalog = queue_calibrate(instance, key)
        written = record_queued_runs(instance, catalog)
        assert list(written) == [run_id]
        assert record_queued_runs(instance, catalog) == {}  # idempotent
        (row,) = rows()
        assert (row.dagster_run_id, RunStatus(row.status), row.run_dir) == (
            run_id, RunStatus.PENDING, None)
        decisions = json.loads(ccat("gaps", PIPELINE, "--json"))
        assert [d["reason"] for d in decisions
                if (d["step"], d["key"]) == ("calibrate", key)] == ["in_flight"]

        # the worker of that very run: Dagster created it queued; now it executes it
        result = execute_run(reconstructable_job().get_subset(asset_selection={CALIBRATE}),
                             instance.get_run_by_id(run_id), instance)
        assert result.success, step_failure(result)
    (claimed,) = rows()
    assert (claimed.id, claimed.dagster_run_id, RunStatus(claimed.status)) == (
        row.id, run_id, RunStatus.COMPLETED)
    assert claimed.run_dir is not None


def test_canceled_queued_run_ends_its_rows_cancelled(manual: Path) -> None:
    key = scan_key("scan-001")
    with dg.instance_for_test() as instance:
        run_id, catalog = queue_calibrate(instance, key)
        record_queued_runs(instance, catalog)
        (row,) = rows()
        assert row.trigger_reason == "manual"
        instance.report_run_canceled(instance.get_run_by_id(run_id))
        assert settle_runs(run_id, RunStatus.CANCELLED, "canceled in the UI") == [row.id]
    (ended,) = rows()
    assert RunStatus(ended.status) == RunStatus.CANCELLED
    assert job_dirs() == 0


def race_once(services: ExecutionServices, key: str, run_id: str) -> list[BaseException]:
    """The queued-rows writer and the run's worker, released at the same instant."""
    start, errors = threading.Barrier(2), []
    pair = QueuedPair(PIPELINE, "calibrate", key)

    def write() -> None:
        start.wait()
        with session_scope() as session:
            record_queued(session, [pair], dagster_run_id=run_id, trigger_reason="manual",
                          base_dir=get_settings().pipelines_dir, backend="local",
                          runtime="host")

    def claim() -> None:
        start.wait()
        claim_run(services, pipeline_name=PIPELINE, step_name="calibrate", sub_group_key=key,
                  dagster_run_id=run_id)

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as exc:
                errors.append(exc)
        return run

    threads = [threading.Thread(target=guarded(write)), threading.Thread(target=guarded(claim))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


def test_queued_row_writer_and_starting_worker_never_make_two_rows(manual: Path) -> None:
    """The sensor writing a placeholder and the run's worker claiming, at the same moment,
    on both databases: one row per (Dagster run, step, sub-group), every time."""
    key = scan_key("scan-001")
    services = local_services()
    for attempt in range(12):
        run_id = f"race-{attempt}"
        assert race_once(services, key, run_id) == []
        mine = [r for r in rows() if r.dagster_run_id == run_id]
        assert len(mine) == 1, f"attempt {attempt}: {len(mine)} rows"
        assert mine[0].run_dir is not None  # the worker's claim, not a stray placeholder
        fail_run(services, mine[0].id, "test: next attempt")


def test_a_pair_another_live_run_is_doing_is_not_claimed_twice(manual: Path) -> None:
    """An unrelated Dagster run's in-flight row of the same inputs: wait (Busy), never a
    second job; the runs a retry descends from are re-attached to instead."""
    key = scan_key("scan-002")
    services = local_services()
    first = claim_run(services, pipeline_name=PIPELINE, step_name="calibrate",
                      sub_group_key=key, dagster_run_id="run-a")
    assert isinstance(first, Claimed)
    busy = claim_run(services, pipeline_name=PIPELINE, step_name="calibrate",
                     sub_group_key=key, dagster_run_id="run-b")
    assert busy == Busy(first.run_id, "run-a")
    retry = claim_run(services, pipeline_name=PIPELINE, step_name="calibrate",
                      sub_group_key=key, dagster_run_id="run-a-retry", own_run_ids=["run-a"])
    assert isinstance(retry, Claimed) and retry.reattached and retry.run_id == first.run_id
    fail_run(services, first.run_id, "test: the other run ended")
    after = claim_run(services, pipeline_name=PIPELINE, step_name="calibrate",
                      sub_group_key=key, dagster_run_id="run-b")
    assert isinstance(after, Claimed) and not after.reattached
    assert [r.dagster_run_id for r in rows()] == ["run-a-retry", "run-b"]


def test_a_retry_re_attaches_to_its_job_though_the_inputs_changed(manual: Path) -> None:
    """New data changed the pair's inputs between a killed run and its retry: the retry
    re-attaches to the row and job its first attempt started (they compute the inputs they
    started with), instead of claiming anew and leaving that job unwatched (seen in the load
    benchmark's chaos mode: four CRON map rows ended FAILED). A run of another chain still
    starts its own row for the new inputs."""
    key = scan_key("scan-003")
    services = local_services()
    apply_tag(manual, "v1")
    first = claim_run(services, pipeline_name=PIPELINE, step_name="calibrate",
                      sub_group_key=key, dagster_run_id="run-a")
    assert isinstance(first, Claimed)
    apply_tag(manual, "v2")
    retry = claim_run(services, pipeline_name=PIPELINE, step_name="calibrate",
                      sub_group_key=key, dagster_run_id="run-a-retry", own_run_ids=["run-a"])
    assert isinstance(retry, Claimed) and retry.reattached and retry.run_id == first.run_id
    assert retry.fingerprint == first.fingerprint
    other = claim_run(services, pipeline_name=PIPELINE, step_name="calibrate",
                      sub_group_key=key, dagster_run_id="run-b")
    assert isinstance(other, Claimed) and not other.reattached
    assert other.fingerprint != first.fingerprint
    assert [r.dagster_run_id for r in rows() if r.sub_group_key == key] == \
        ["run-a-retry", "run-b"]


def apply_tag(tmp_path: Path, tag: str) -> None:
    """The MANUAL test pipeline with the calibrate parameter ``tag`` (a new input fingerprint)."""
    spec = pipeline_spec(tmp_path / "processing", tag=tag)
    spec["pipelines"][0]["trigger"] = {"type": "MANUAL"}
    ccat("apply", "--no-reload", str(write_spec(tmp_path / "pipeline.yaml", spec)))


def test_inputs_back_to_an_older_runs_are_reduced_anew(manual: Path) -> None:
    """Only the newest COMPLETED run is re-reported: re-reporting an older one whose inputs
    came back would leave the pair a gap for ever (launched, re-reported, launched again)."""
    key = scan_key("scan-001")
    defs = load_definitions
    with dg.instance_for_test() as instance:
        for tag in ("v1", "v2", "v1"):
            apply_tag(manual, tag)
            assert materialize(defs(), instance, "calibrate", key).success
    done = [r for r in rows() if RunStatus(r.status) == RunStatus.COMPLETED]
    assert len(done) == 3 and done[0].input_fingerprint == done[2].input_fingerprint
    assert done[1].input_fingerprint != done[0].input_fingerprint
    decisions = json.loads(ccat("gaps", PIPELINE, "--json"))
    assert [d["reason"] for d in decisions
            if (d["step"], d["key"]) == ("calibrate", key)] == ["up_to_date"]


def test_kinds_name_the_configured_runtime_and_backend(manual: Path) -> None:
    spec = load_definitions().resolve_assets_def(CALIBRATE).specs_by_key[CALIBRATE]
    settings = get_settings()
    assert {k.removeprefix("dagster/kind/") for k in spec.tags if k.startswith("dagster/kind/")} \
        == {settings.container_runtime, settings.hpc_backend} == {"host", "local"}


def test_partitions_sensor_registers_a_manual_pipeline_and_observes_its_raw_data(
        manual: Path) -> None:
    defs = load_definitions()
    sensor = defs.get_sensor_def("ccat_partitions_sensor")
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, instance_ref=instance.get_ref())
        result = sensor(context)
        assert isinstance(result, dg.SensorResult)
        assert not result.dynamic_partitions_requests  # added by the sensor itself
        assert set(instance.get_dynamic_partitions(SCAN_PARTITIONS)) == {
            scan_key(s) for s, _, _ in SCANS}
        (observed,) = result.asset_events
        assert observed.asset_key == dg.AssetKey(["ccat", "grouping", "chai-archived"])
        with session_scope() as session:
            packages = session.scalar(sa.select(sa.func.count()).select_from(RawDataPackage))
        assert observed.metadata["packages"] == dg.MetadataValue.int(packages) and packages > 0
        again = sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor,
                                               instance_ref=instance.get_ref()))
        assert again.skip_reason is not None and "registered" not in again.skip_reason


def test_a_gap_launched_run_whose_upstream_is_incomplete_defers_and_a_persons_fails(
        manual: Path) -> None:
    """The single-run twin of the batch case (tests/batching/test_batch_dagster.py): the
    map of a source whose scans are not calibrated (new scans arrived after the gap sensor
    launched it). Launched by automation (``ccat/reason``) the run succeeds without a
    materialization and with a warning, and is launched again later; launched by a person it
    fails with the reason. Neither writes an attempt."""
    defs = load_definitions()
    grid = dg.AssetKey(["ccat", PIPELINE, "grid"])
    key = map_key("NGC253", "CO43")
    with dg.instance_for_test() as instance:
        by_sensor = materialize(defs, instance, "grid", key, tags={"ccat/reason": "new_data"})
        assert by_sensor.success
        assert instance.get_materialized_partitions(grid) == set()
        warnings = [e.message for e in instance.all_logs(by_sensor.run_id)
                    if e.level == 30 and "deferred" in e.message]
        assert warnings and "upstream not complete" in warnings[0]

        by_person = materialize(defs, instance, "grid", key, raise_on_error=False)
        assert not by_person.success
        failure = by_person.get_step_failure_events()[0].step_failure_data
        assert "upstream not complete" in failure.error.to_string()
        assert instance.get_materialized_partitions(grid) == set()
    assert rows("grid") == []
