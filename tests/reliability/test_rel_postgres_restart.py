"""PostgreSQL restarted (``pg_ctlcluster ... restart``) during a run, on a real local job:

* while the job is polled: the run completes, every product is recorded once, and no row is
  left in flight. The engine's pool replaces the connections the restart killed: each sat
  idle through the restart, so it is pinged before use (``ccat_assets/opsdb/liveness.py``).
* inside the collection transaction: the transaction is lost and the run raises, having
  recorded nothing, its row still COLLECTING_RESULTS. Then either Dagster retries it (a retry
  run whose parent is the failed run): reconciliation leaves the row to the retry, which
  re-attaches and records each product once; or nothing retries it: reconciliation fails the
  row, saying why.

Either way no row is left in flight. The run pauses at a fault point
(:mod:`ccat_assets.fault_points`: ``job-running``, ``in-collection``) and the restart happens
while it waits there, so it lands in the phase meant every time. Needs root and the local
cluster's ``pg_ctlcluster`` (skips, or fails under ``CCAT_REQUIRE_INTEGRATION=1``, without)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from ccat_assets import fault_points
from ccat_assets.execution.execute import PollPolicy, execute_partition
from ccat_assets.opsdb import ExecutedReductionStep, RunStatus, migrate
from ccat_assets.settings import get_settings
from sensors.reconcile import reconcile
from tests.conftest import PG_URL, _postgres_reachable, postgres_schema_url, require_service
from tests.reliability.conftest import (
    KEY,
    PIPELINE,
    STEP,
    assert_no_live_in_flight_rows,
    job_dirs,
    local_services,
    product_paths,
    runs,
)

pytestmark = pytest.mark.integration
CLUSTERS = Path("/etc/postgresql")


@pytest.fixture
def db_url() -> Iterator[str]:
    """This module runs on PostgreSQL only (it overrides the two-database fixture)."""
    require_service(_postgres_reachable(), f"PostgreSQL at CCAT_TEST_DATABASE_URL={PG_URL!r}")
    for url in postgres_schema_url(PG_URL):
        migrate.upgrade(url)
        yield url


@pytest.fixture
def cluster() -> str:
    """The version of the local cluster ``pg_ctlcluster`` restarts."""
    versions = sorted(p.name for p in CLUSTERS.iterdir()) if CLUSTERS.is_dir() else []
    require_service(bool(versions) and shutil.which("pg_ctlcluster") is not None
                    and os.geteuid() == 0, "a local PostgreSQL cluster to restart (root)")
    return versions[-1]


def _restart_postgres(version: str) -> float:
    started = time.monotonic()
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
                   check=True, capture_output=True, timeout=120)
    return time.monotonic() - started


def _arm(monkeypatch: pytest.MonkeyPatch, point: str, marker: Path) -> None:
    for name, value in fault_points.arm(point, marker).items():
        monkeypatch.setenv(name, value)


def test_postgres_restart_while_polling(cluster: str, make_pipeline,
                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    make_pipeline({"sleep_s": 3, "n_files": 3})
    marker = tmp_path / "fault"
    _arm(monkeypatch, "job-running", marker)
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = execute_partition(
                local_services(), pipeline_name=PIPELINE, step_name=STEP, sub_group_key=KEY,
                dagster_run_id="d-pg")
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert fault_points.wait_paused(marker, 60, alive=thread.is_alive) == os.getpid(), outcome
    try:
        _restart_postgres(cluster)  # while the run is between two polls of its job
    finally:
        fault_points.release(marker)
    thread.join(120)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert outcome["result"].status == RunStatus.COMPLETED
    [row] = runs()
    assert row.status == RunStatus.COMPLETED
    paths = product_paths(row.id)
    assert len(paths) == len(set(paths)) and sum(p.startswith("output/") for p in paths) == 4
    assert_no_live_in_flight_rows()


@dg.op
def _reduce() -> None:
    pass


@dg.job
def _partition_run() -> None:
    """Stands in for the asset job: the test runs ``execute_partition`` as its worker would."""
    _reduce()


def _attempt(dagster_run_id: str, outcome: dict) -> threading.Thread:
    def run() -> None:
        try:
            outcome["result"] = execute_partition(
                local_services(poll=PollPolicy(min_s=0.05, max_s=0.2)), pipeline_name=PIPELINE,
                step_name=STEP, sub_group_key=KEY, dagster_run_id=dagster_run_id)
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _check_products_once(run_id: int, n_science: int) -> None:
    paths = product_paths(run_id)
    assert len(paths) == len(set(paths))
    assert sum(p.startswith("output/science/") for p in paths) == n_science


@pytest.mark.parametrize("ending", ["retried", "abandoned"])
def test_postgres_restart_inside_collection(cluster: str, make_pipeline,
                                            monkeypatch: pytest.MonkeyPatch,
                                            ending: str, tmp_path: Path) -> None:
    monkeypatch.setenv("CCAT_WORKFLOW_MANAGER_PROCESSING_LOCATION_ID", "test-processing")
    get_settings.cache_clear()
    make_pipeline({"n_files": 300})
    marker = tmp_path / "fault"
    _arm(monkeypatch, "in-collection", marker)
    with dg.instance_for_test() as instance:
        first = instance.create_run_for_job(job_def=_partition_run,
                                            status=dg.DagsterRunStatus.STARTED)
        outcome: dict = {}
        thread = _attempt(first.run_id, outcome)
        assert fault_points.wait_paused(marker, 120, alive=thread.is_alive) == os.getpid()
        try:
            _restart_postgres(cluster)  # while the collection transaction is open
        finally:
            fault_points.release(marker)
        thread.join(120)
        assert not thread.is_alive()
        [row] = runs()
        # the restart landed inside the collection transaction (the test checks it did):
        # the run raised, the lost transaction recorded nothing, the row is still in flight
        assert "error" in outcome, f"collection finished before the restart: {row.status}"
        assert row.status == RunStatus.COLLECTING_RESULTS
        assert product_paths(row.id) == []
        if ending == "abandoned":
            _abandoned(instance, first, row.id)
        else:
            _retried(instance, first, row)
    assert_no_live_in_flight_rows()


def _abandoned(instance: dg.DagsterInstance, first: dg.DagsterRun, row_id: int) -> None:
    """Nothing retries the failed run: reconciliation fails the row and says why."""
    instance.report_run_failed(first)
    [repair] = reconcile(instance)
    assert repair.row_id == row_id and len(job_dirs()) == 1
    [row] = runs()
    assert row.status == RunStatus.FAILED and row.error_message == (
        f"reconciled: Dagster run {first.run_id} ended FAILURE while this run was "
        f"COLLECTING_RESULTS; no live run was watching it")
    assert product_paths(row.id) == []


def _retried(instance: dg.DagsterInstance, first: dg.DagsterRun,
             row: ExecutedReductionStep) -> None:
    """Dagster retries the failed run: reconciliation leaves the row to the retry, which
    re-attaches to the same job and records each product once."""
    instance.add_run_tags(first.run_id, {"dagster/will_retry": "true"})
    instance.report_run_failed(first)
    assert reconcile(instance) == []  # the announced retry will re-attach
    retry = instance.create_run_for_job(
        job_def=_partition_run, status=dg.DagsterRunStatus.STARTED,
        parent_run_id=first.run_id, root_run_id=first.run_id)
    instance.add_run_tags(first.run_id, {"dagster/auto_retry_run_id": retry.run_id})
    assert reconcile(instance) == []  # the retry is live
    outcome = execute_partition(local_services(), pipeline_name=PIPELINE, step_name=STEP,
                                sub_group_key=KEY, dagster_run_id=retry.run_id,
                                own_run_ids=[first.run_id])  # the retry's parent
    assert outcome.reattached and outcome.run_id == row.id and outcome.job_id == row.hpc_job_id
    [done] = runs()
    assert done.status == RunStatus.COMPLETED and done.dagster_run_id == retry.run_id
    assert job_dirs() == [row.hpc_job_id]  # one job, never submitted twice
    _check_products_once(row.id, n_science=301)  # 300 parts and echo.json
