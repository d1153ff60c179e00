"""The run-status sensors keep the ops-db true to Dagster: a failed or canceled Dagster run
settles its in-flight ExecutedReductionStep and cancels its (real, local) job."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from ccat_assets.execution.jobs import JobSpec
from ccat_assets.opsdb import ExecutedReductionStep, RunStatus
from ccat_assets.opsdb.session import session_scope
from ccat_assets.settings import get_settings
from resources.hpc import make_backend
from sensors.run_status import ccat_run_canceled_sensor, ccat_run_failure_sensor
from tests.gaps.gapkit import add_run, scan_key


@dg.op
def _worker_dies() -> None:
    raise RuntimeError("the run worker died")


@dg.job
def _doomed() -> None:
    _worker_dies()


def _long_job(tmp_path: Path) -> str:
    """A real local job that would run for a minute."""
    return make_backend(get_settings()).submit(JobSpec(
        name="ccat-test-orphan", argv=[sys.executable, "-c", "import time; time.sleep(60)"],
        env={}, workdir=tmp_path, stdout_path=tmp_path / "out.log",
        stderr_path=tmp_path / "err.log"))


def _wait_finished(job_id: str) -> str:
    backend = make_backend(get_settings())
    for _ in range(100):
        status = backend.status([job_id])[job_id]
        if status.finished:
            return status.state
        time.sleep(0.1)
    return "still running"


def _failure_context(instance: dg.DagsterInstance, run_id: str) -> dg.RunFailureSensorContext:
    [record] = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return dg.build_run_status_sensor_context(
        sensor_name="ccat_run_failure_sensor", dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id), dagster_event=record.dagster_event,
    ).for_run_failure()


def _status(run_id: int) -> tuple[RunStatus, str | None]:
    with session_scope() as session:
        row = session.get(ExecutedReductionStep, run_id)
        return RunStatus(row.status), row.error_message


def test_failed_run_marks_its_ops_run_failed_and_cancels_the_job(
        continuous: Path, tmp_path: Path) -> None:
    job_id = _long_job(tmp_path)
    with dg.instance_for_test() as instance:
        result = _doomed.execute_in_process(instance=instance, raise_on_error=False)
        running = add_run("calibrate", scan_key("scan-001"), RunStatus.RUNNING,
                          dagster_run_id=result.run_id, hpc_job_id=job_id)
        done = add_run("calibrate", scan_key("scan-002"), RunStatus.COMPLETED,
                       dagster_run_id=result.run_id)
        ccat_run_failure_sensor(_failure_context(instance, result.run_id))
    status, message = _status(running)
    assert status == RunStatus.FAILED
    assert result.run_id in message and "failed" in message
    assert _status(done)[0] == RunStatus.COMPLETED  # the asset code's outcome stands
    assert _wait_finished(job_id) == "cancelled"


def test_failed_run_that_dagster_retries_is_left_running(continuous: Path,
                                                         tmp_path: Path) -> None:
    with dg.instance_for_test() as instance:
        result = _doomed.execute_in_process(instance=instance, raise_on_error=False,
                                            tags={"dagster/will_retry": "true"})
        running = add_run("calibrate", scan_key("scan-001"), RunStatus.SUBMITTED,
                          dagster_run_id=result.run_id)
        ccat_run_failure_sensor(_failure_context(instance, result.run_id))
    assert _status(running)[0] == RunStatus.SUBMITTED


def test_failed_run_dagster_has_not_yet_decided_to_retry_is_left_running(
        continuous: Path, tmp_path: Path) -> None:
    """Dagster writes the retry decision (``dagster/will_retry``) after the failure: a run
    read in between, with run retries on, is a retry that may still come, not a final
    failure (sensors/reconcile.py ``retry_undecided``). Its reconciliation waits for it as
    for an announced retry; once Dagster says no, the rows are failed."""
    home = tmp_path / "dagster"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as without_retries:
        result = _doomed.execute_in_process(instance=without_retries, raise_on_error=False)
    retries = {"run_retries": {"enabled": True, "max_retries": 1}}
    with dg.instance_for_test(temp_dir=str(home), overrides=retries) as instance:
        assert "dagster/will_retry" not in instance.get_run_by_id(result.run_id).tags
        running = add_run("calibrate", scan_key("scan-001"), RunStatus.SUBMITTED,
                          dagster_run_id=result.run_id)
        ccat_run_failure_sensor(_failure_context(instance, result.run_id))
        assert _status(running)[0] == RunStatus.SUBMITTED
        instance.add_run_tags(result.run_id, {"dagster/will_retry": "false"})
        ccat_run_failure_sensor(_failure_context(instance, result.run_id))
    assert _status(running)[0] == RunStatus.FAILED


@pytest.mark.parametrize("start", [RunStatus.PENDING, RunStatus.COLLECTING_RESULTS])
def test_canceled_run_marks_its_ops_run_cancelled(continuous: Path, tmp_path: Path,
                                                  start: RunStatus) -> None:
    job_id = _long_job(tmp_path)
    with dg.instance_for_test() as instance:
        run = instance.create_run_for_job(job_def=_doomed)
        instance.report_run_canceled(run)
        row = add_run("calibrate", scan_key("scan-001"), start, dagster_run_id=run.run_id,
                      hpc_job_id=job_id)
        [record] = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_CANCELED)
        context = dg.build_run_status_sensor_context(
            sensor_name="ccat_run_canceled_sensor", dagster_instance=instance,
            dagster_run=instance.get_run_by_id(run.run_id), dagster_event=record.dagster_event)
        ccat_run_canceled_sensor(context)
    status, message = _status(row)
    assert status == RunStatus.CANCELLED and "canceled" in message
    assert _wait_finished(job_id) == "cancelled"
