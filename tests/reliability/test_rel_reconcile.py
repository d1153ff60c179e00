"""Reconciliation: an ExecutedReductionStep left in flight with no live run behind it is
failed (cancelled, for a canceled run) with a reason that says so, and its still-live job
cancelled; a row some run may still finish is never touched. Real Dagster instances (run
statuses, retries), real local jobs, on both databases; the sensor, the run-status sensors
and ``ccat-wm runs reconcile`` too."""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ccat_assets.cli import cli
from ccat_assets.execution.jobs import JobSpec
from ccat_assets.execution.reconcile import DagsterState, JobLife, RowState, judge
from ccat_assets.opsdb import ExecutedReductionStep, RunStatus
from ccat_assets.opsdb.session import session_scope
from ccat_assets.opsdb.types import utcnow
from ccat_assets.settings import get_settings
from resources.hpc import make_backend
from sensors import build_automation
from sensors.reconcile import _apply, ccat_reconcile_sensor, dagster_states, reconcile
from sensors.run_status import ccat_run_failure_sensor
from tests.gaps.gapkit import add_run, scan_key
from tests.reliability.conftest import assert_no_live_in_flight_rows

LATER = dt.timedelta(hours=2)  # past the default orphan age of one hour


@dg.op
def _noop() -> None:
    pass


@dg.job
def _job() -> None:
    _noop()


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    """One Dagster instance for the module (opening one costs seconds); each test's rows are
    in its own ops-db and name only its own runs. It also sets DAGSTER_HOME for the CLI."""
    with dg.instance_for_test() as dagster_instance:
        yield dagster_instance


@pytest.fixture
def env(make_pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """The fault pipeline at the processing location this instance serves; room for every
    test job at once; every job still live at the end is cancelled."""
    monkeypatch.setenv("CCAT_WORKFLOW_MANAGER_PROCESSING_LOCATION_ID", "test-processing")
    monkeypatch.setenv("CCAT_WORKFLOW_MANAGER_LOCAL_MAX_PARALLEL", "16")
    get_settings.cache_clear()
    make_pipeline()
    yield tmp_path
    backend = make_backend(get_settings())
    jobs = get_settings().jobs_dir
    for job in (p.name for p in jobs.iterdir() if not p.name.startswith(".")) \
            if jobs.is_dir() else []:
        if not backend.status([job])[job].finished:
            backend.cancel(job)


def _submit(tmp_path: Path, name: str, seconds: float = 60) -> str:
    return make_backend(get_settings()).submit(JobSpec(
        name=name, argv=[sys.executable, "-c", f"import time; time.sleep({seconds})"],
        env={}, workdir=tmp_path, stdout_path=tmp_path / f"{name}.out",
        stderr_path=tmp_path / f"{name}.err"))


def _job_state(job_id: str, want: str | None = None, timeout_s: float = 10) -> str:
    """The job's state; with ``want``, after waiting up to ``timeout_s`` for it."""
    backend = make_backend(get_settings())
    deadline = time.monotonic() + timeout_s
    while True:
        state = backend.status([job_id])[job_id].state
        if want is None or state == want or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def _row(row_id: int) -> ExecutedReductionStep:
    with session_scope() as session:
        row = session.get(ExecutedReductionStep, row_id)
        session.expunge(row)
        return row


def _run(instance: dg.DagsterInstance, status: dg.DagsterRunStatus,
         tags: dict[str, str] | None = None, parent: str | None = None) -> str:
    """A run of this instance that is STARTED, or ended FAILURE / CANCELED / SUCCESS as the
    instance records it."""
    start = status if status not in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED) \
        else dg.DagsterRunStatus.STARTED
    run = instance.create_run_for_job(job_def=_job, status=start, tags=tags or {},
                                      parent_run_id=parent, root_run_id=parent)
    if status == dg.DagsterRunStatus.FAILURE:
        instance.report_run_failed(run)
    elif status == dg.DagsterRunStatus.CANCELED:
        instance.report_run_canceled(run)
    assert instance.get_run_by_id(run.run_id).status == status
    return run.run_id


def test_rows_whose_dagster_run_ended_are_failed_and_their_jobs_cancelled(
        env: Path, instance: dg.DagsterInstance) -> None:
    failed_job, canceled_job, live_job = (_submit(env, f"ccat-rec-{n}")
                                          for n in ("failed", "canceled", "live"))
    failed = _run(instance, dg.DagsterRunStatus.FAILURE)
    canceled = _run(instance, dg.DagsterRunStatus.CANCELED)
    succeeded = _run(instance, dg.DagsterRunStatus.SUCCESS)
    started = _run(instance, dg.DagsterRunStatus.STARTED)
    rows = {
        "failed": add_run("calibrate", scan_key("s1"), RunStatus.RUNNING,
                          dagster_run_id=failed, hpc_job_id=failed_job),
        "canceled": add_run("calibrate", scan_key("s2"), RunStatus.SUBMITTED,
                            dagster_run_id=canceled, hpc_job_id=canceled_job),
        "succeeded": add_run("calibrate", scan_key("s3"), RunStatus.COLLECTING_RESULTS,
                             dagster_run_id=succeeded),
        "started": add_run("calibrate", scan_key("s4"), RunStatus.RUNNING,
                           dagster_run_id=started, hpc_job_id=live_job),
        "completed": add_run("calibrate", scan_key("s5"), RunStatus.COMPLETED,
                             dagster_run_id=failed),
    }
    assert _job_state(failed_job, "running") == "running"
    repairs = reconcile(instance)
    assert reconcile(instance) == []  # a second pass finds nothing more
    assert {(r.row_id, r.old_status) for r in repairs} == {
        (rows["failed"], RunStatus.RUNNING), (rows["canceled"], RunStatus.SUBMITTED),
        (rows["succeeded"], RunStatus.COLLECTING_RESULTS)}
    failed_row = _row(rows["failed"])
    assert failed_row.status == RunStatus.FAILED and failed_row.finished_at is not None
    assert failed_row.error_message == (
        f"reconciled: Dagster run {failed} ended FAILURE while this run was RUNNING; "
        f"no live run was watching it")
    canceled_row = _row(rows["canceled"])  # as the run-canceled sensor would have marked it
    assert canceled_row.status == RunStatus.CANCELLED
    assert f"Dagster run {canceled} ended CANCELED while this run was SUBMITTED" in \
        canceled_row.error_message
    assert _row(rows["succeeded"]).status == RunStatus.FAILED
    assert _job_state(failed_job, "cancelled") == "cancelled"
    assert _job_state(canceled_job, "cancelled") == "cancelled"
    # the live run and the asset code's own outcome are untouched; the live run's job runs on
    assert _row(rows["started"]).status == RunStatus.RUNNING
    assert _row(rows["completed"]).status == RunStatus.COMPLETED
    assert _job_state(live_job) == "running"
    # to an instance that does not know the run, its live job vouches for it
    assert reconcile(dg.DagsterInstance.ephemeral(), now=utcnow() + LATER) == []


def test_a_run_dagster_retries_is_left_to_its_retry(
        env: Path, instance: dg.DagsterInstance) -> None:
    retry_tags = {"dagster/will_retry": "true"}
    # failed, retry announced but not launched yet: the retry will re-attach
    pending = _run(instance, dg.DagsterRunStatus.FAILURE, retry_tags)
    # failed, its retry (found by its tag) is not started yet
    parent = _run(instance, dg.DagsterRunStatus.FAILURE, retry_tags)
    child = _run(instance, dg.DagsterRunStatus.NOT_STARTED, parent=parent)
    instance.add_run_tags(parent, {"dagster/auto_retry_run_id": child})
    # failed, its retry (found as a re-execution) failed too before claiming the row
    parent2 = _run(instance, dg.DagsterRunStatus.FAILURE, retry_tags)
    child2 = _run(instance, dg.DagsterRunStatus.FAILURE,
                  {"dagster/parent_run_id": parent2}, parent=parent2)
    rows = [add_run("calibrate", scan_key(f"r{i}"), RunStatus.RUNNING, dagster_run_id=rid)
            for i, rid in enumerate((pending, parent, parent2))]
    repairs = reconcile(instance)
    assert [r.row_id for r in repairs] == [rows[2]]
    assert _row(rows[2]).error_message.startswith(
        f"reconciled: Dagster run {child2} (the automatic retry of {parent2}) ended FAILURE")
    assert [_row(r).status for r in rows[:2]] == [RunStatus.RUNNING] * 2
    # a retry announced an hour ago that never started will not come
    [late] = reconcile(instance, now=utcnow() + LATER)
    assert late.row_id == rows[0] and "announced retry never started" in late.reason
    assert _row(rows[1]).status == RunStatus.RUNNING  # its retry is still to start


def test_a_failed_run_without_dagsters_retry_decision_is_a_pending_retry(
        tmp_path: Path) -> None:
    """Dagster tags a failed run ``dagster/will_retry`` after storing the failure: read in
    between, with run retries on, the run may still be retried, so reconciliation waits for
    it as for an announced retry (and, without run retries, the failure is final)."""
    with dg.instance_for_test(temp_dir=str(tmp_path)) as without_retries:
        run_id = _run(without_retries, dg.DagsterRunStatus.FAILURE)
        assert dagster_states(without_retries, [run_id])[run_id].retry_pending_since is None
    retries = {"run_retries": {"enabled": True, "max_retries": 1}}
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides=retries) as instance:
        assert dagster_states(instance, [run_id])[run_id].retry_pending_since is not None
        instance.add_run_tags(run_id, {"dagster/will_retry": "false"})
        assert dagster_states(instance, [run_id])[run_id].retry_pending_since is None


def test_rows_without_a_dagster_run_wait_for_the_age_and_their_job(
        env: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    ended = _submit(env, "ccat-rec-ended", seconds=0)
    live = _submit(env, "ccat-rec-cli-live")
    assert _job_state(ended, "completed") == "completed"
    no_job = add_run("calibrate", scan_key("n1"), RunStatus.PENDING)
    job_ended = add_run("calibrate", scan_key("n2"), RunStatus.RUNNING, hpc_job_id=ended)
    job_live = add_run("calibrate", scan_key("n3"), RunStatus.RUNNING, hpc_job_id=live)
    unknown = add_run("calibrate", scan_key("n4"), RunStatus.COLLECTING_RESULTS,
                      dagster_run_id="not-a-run-of-this-instance")
    assert reconcile(instance) == []  # all younger than the orphan age
    # another processing location's instance never touches them (they may be its runs)
    monkeypatch.setenv("CCAT_WORKFLOW_MANAGER_PROCESSING_LOCATION_ID", "elsewhere")
    get_settings.cache_clear()
    assert reconcile(instance, now=utcnow() + LATER) == []
    monkeypatch.setenv("CCAT_WORKFLOW_MANAGER_PROCESSING_LOCATION_ID", "test-processing")
    get_settings.cache_clear()
    repairs = reconcile(instance, now=utcnow() + LATER)
    assert sorted(r.row_id for r in repairs) == [no_job, job_ended, unknown]
    assert "no Dagster run recorded, no job, and the row stayed PENDING for 120 min" in \
        _row(no_job).error_message
    assert f"its job {ended} has ended" in _row(job_ended).error_message
    assert "Dagster run not-a-run-of-this-instance is unknown to this instance" in \
        _row(unknown).error_message
    assert _row(job_live).status == RunStatus.RUNNING  # its job is the evidence of life
    assert _job_state(live) == "running"
    make_backend(get_settings()).cancel(live)
    _job_state(live, "cancelled")
    [repair] = reconcile(instance, now=utcnow() + LATER)
    assert repair.row_id == job_live and not repair.cancel_job
    monkeypatch.setenv("CCAT_WORKFLOW_MANAGER_RECONCILE_ORPHAN_AGE_SECONDS", "0")
    get_settings.cache_clear()
    fresh = add_run("calibrate", scan_key("n5"), RunStatus.SUBMITTED)
    assert [r.row_id for r in reconcile(instance)] == [fresh]
    assert_no_live_in_flight_rows()


def test_dry_run_and_cli_change_nothing_then_repair(
        env: Path, instance: dg.DagsterInstance) -> None:
    job = _submit(env, "ccat-rec-cli")
    failed = _run(instance, dg.DagsterRunStatus.FAILURE)
    row = add_run("calibrate", scan_key("d1"), RunStatus.RUNNING, dagster_run_id=failed,
                  hpc_job_id=job)
    before = _row(row)
    [planned] = reconcile(instance, dry_run=True)
    assert planned.row_id == row and planned.cancel_job
    dry = CliRunner().invoke(cli, ["runs", "reconcile", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"would move ops-db run {row} RUNNING -> FAILED: reconciled: Dagster run {failed}" \
        in dry.output
    assert "reconciliation would repair 1 ops-db run(s)" in dry.output
    after = _row(row)
    assert (after.status, after.updated_at, after.error_message) == \
        (before.status, before.updated_at, None)
    assert _job_state(job, "running") == "running"
    done = CliRunner().invoke(cli, ["runs", "reconcile"])
    assert done.exit_code == 0, done.output
    assert f"ops-db run {row}: RUNNING -> FAILED: reconciled" in done.output
    assert f"cancelled local job {job}" in done.output
    assert f"reconciliation repaired 1 ops-db run(s) left in flight: {row} (RUNNING -> FAILED)" \
        in done.output
    again = CliRunner().invoke(cli, ["runs", "reconcile"])
    assert "no in-flight run without a live run behind it" in again.output
    assert _row(row).status == RunStatus.FAILED
    assert _job_state(job, "cancelled") == "cancelled"
    listed = CliRunner().invoke(cli, ["runs", "--status", "failed"])  # listing still works
    assert listed.exit_code == 0 and "reconciled: Dagster run" in listed.output


def test_cli_refuses_without_dagster_home(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    result = CliRunner().invoke(cli, ["runs", "reconcile"])
    assert result.exit_code == 1 and "DAGSTER_HOME is not set" in result.output


def test_a_row_that_changed_while_judged_is_not_clobbered(
        env: Path, instance: dg.DagsterInstance) -> None:
    """The repair re-checks the row under its lock: a retry that re-attached in between
    (new Dagster run id) keeps it."""
    failed = _run(instance, dg.DagsterRunStatus.FAILURE)
    row = add_run("calibrate", scan_key("c1"), RunStatus.RUNNING, dagster_run_id=failed)
    [repair] = reconcile(instance, dry_run=True)
    seen = _row(row)
    with session_scope() as session:
        session.get(ExecutedReductionStep, row).dagster_run_id = "the-retry"
    state = RowState(seen.id, RunStatus(seen.status), seen.dagster_run_id,
                     seen.hpc_job_id, seen.updated_at)
    lines: list[str] = []
    assert not _apply(get_settings(), state, repair, lines.append)
    assert _row(row).status == RunStatus.RUNNING
    assert lines == [f"ops-db run {row} changed while it was judged; left as it is"]


def test_reconcile_sensor_and_run_failure_sensor_repair_and_say_so(
        env: Path, instance: dg.DagsterInstance) -> None:
    names = {s.name for s in build_automation([], get_settings()).sensors}
    assert "ccat_reconcile_sensor" in names
    ended = _run(instance, dg.DagsterRunStatus.CANCELED)
    row = add_run("calibrate", scan_key("x1"), RunStatus.STAGING_DATA,
                  dagster_run_id=ended)
    result = ccat_reconcile_sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.SkipReason)
    assert result.skip_message == (
        f"reconciliation repaired 1 ops-db run(s) left in flight: {row} "
        f"(STAGING_DATA -> CANCELLED)")
    # a retry that failed before claiming the row: the failure sensor of the retry finds
    # no row of its own, and its reconciliation repairs the row naming the parent
    parent = _run(instance, dg.DagsterRunStatus.FAILURE, {"dagster/will_retry": "true"})
    retry = _run(instance, dg.DagsterRunStatus.FAILURE, parent=parent)
    instance.add_run_tags(parent, {"dagster/auto_retry_run_id": retry})
    orphan = add_run("calibrate", scan_key("x2"), RunStatus.RUNNING,
                     dagster_run_id=parent)
    [record] = instance.all_logs(retry, of_type=dg.DagsterEventType.RUN_FAILURE)
    ccat_run_failure_sensor(dg.build_run_status_sensor_context(
        sensor_name="ccat_run_failure_sensor", dagster_instance=instance,
        dagster_run=instance.get_run_by_id(retry),
        dagster_event=record.dagster_event).for_run_failure())
    assert _row(orphan).status == RunStatus.FAILED
    assert f"Dagster run {retry} (the automatic retry of {parent}) ended FAILURE" in \
        _row(orphan).error_message
    assert_no_live_in_flight_rows()


@pytest.mark.parametrize(("state", "job", "age_h", "repaired"), [
    (DagsterState("r", "STARTED"), JobLife.NONE, 9, False),
    (DagsterState("r", "QUEUED"), JobLife.ENDED, 9, False),
    (DagsterState("r", "FAILURE"), JobLife.LIVE, 0, True),
    (DagsterState("r", "FAILURE", retry_pending_since=utcnow()), JobLife.LIVE, 0, False),
    (None, JobLife.LIVE, 9, False),
    (None, JobLife.UNCHECKED, 9, False),
    (None, JobLife.ENDED, 0, False),
    (None, JobLife.ENDED, 9, True),
    (DagsterState("r", None), JobLife.NONE, 9, True),
])
def test_judge(state: DagsterState | None, job: JobLife, age_h: int, repaired: bool) -> None:
    """The pure rule, without a database."""
    now = utcnow()
    row = RowState(1, RunStatus.RUNNING, "r" if state else None,
                   None if job == JobLife.NONE else "job-1", now - dt.timedelta(hours=age_h))
    repair = judge(row, state, job, now=now, orphan_age=dt.timedelta(hours=1))
    assert (repair is not None) == repaired
    terminal = RowState(1, RunStatus.FAILED, "r", None, now - dt.timedelta(hours=9))
    assert judge(terminal, DagsterState("r", "FAILURE"), job, now=now,
                 orphan_age=dt.timedelta(hours=1)) is None


@pytest.mark.parametrize(("pending_s", "repaired"), [(60, False), (180, True)])
def test_an_announced_retry_that_never_starts_is_waited_for_only_the_grace(
        pending_s: int, repaired: bool) -> None:
    """Dagster's retry daemon was seen to miss a failure under load and never launch the
    retry it announced (``dagster/will_retry=true``): after ``retry_grace`` the row is
    failed and its job cancelled, not left to block its pair for ``orphan_age``."""
    now = utcnow()
    row = RowState(1, RunStatus.RUNNING, "r", "job-1", now - dt.timedelta(hours=9))
    state = DagsterState("r", "FAILURE",
                         retry_pending_since=now - dt.timedelta(seconds=pending_s))
    repair = judge(row, state, JobLife.LIVE, now=now, orphan_age=dt.timedelta(hours=1),
                   retry_grace=dt.timedelta(seconds=120))
    assert (repair is not None) == repaired
    if repair is not None:
        assert "announced retry never started" in repair.reason and repair.cancel_job


@pytest.mark.parametrize(("state", "age_h", "outcome"), [
    (DagsterState("r", "QUEUED"), 9, None),
    (DagsterState("r", "SUCCESS"), 0, "removed"),  # it re-reported a COMPLETED run
    (DagsterState("r", "FAILURE"), 0, "removed"),  # an upstream step of the run failed
    (DagsterState("r", "CANCELED"), 0, RunStatus.CANCELLED),  # canceled while queued
    (DagsterState("r", None), 9, "removed"),  # the run is unknown to this instance
])
def test_judge_placeholders(state: DagsterState, age_h: int,
                            outcome: RunStatus | str | None) -> None:
    """A queued run's placeholder records no work: removed, or CANCELLED with its run."""
    now = utcnow()
    row = RowState(1, RunStatus.PENDING, "r", None, now - dt.timedelta(hours=age_h),
                   placeholder=True)
    repair = judge(row, state, JobLife.NONE, now=now, orphan_age=dt.timedelta(hours=1))
    if outcome is None:
        assert repair is None
    elif outcome == "removed":
        assert repair is not None and repair.drop and not repair.cancel_job
        assert "never started, so it is removed" in repair.reason
    else:
        assert repair is not None and not repair.drop and repair.target == outcome


def test_updated_at_is_what_the_age_reads(
        env: Path, instance: dg.DagsterInstance) -> None:
    """The age is measured from the row's last change, not its creation."""
    row = add_run("calibrate", scan_key("u1"), RunStatus.RUNNING)
    with session_scope() as session:
        session.execute(sa.update(ExecutedReductionStep)
                        .where(ExecutedReductionStep.id == row)
                        .values(updated_at=utcnow() - LATER))
    assert [r.row_id for r in reconcile(instance)] == [row]
