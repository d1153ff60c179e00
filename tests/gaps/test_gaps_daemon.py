"""End to end with a real ``dagster-daemon``: data arrives, the gap sensor launches the whole
DAG by itself (queued run coordinator, run workers, the local backend running the test
program), and new data later reprocesses only what it touches."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from ccat_assets.opsdb import ExecutedReductionStep, RunStatus
from ccat_assets.opsdb.session import session_scope
from tests.daemonkit import BIN, completed_runs, run_cli, wait_for
from tests.gaps.gapkit import PIPELINE, ingest, map_key, scan_key


@pytest.mark.integration
@pytest.mark.slow
def test_daemon_runs_the_dag_and_reprocesses_only_new_data(
        continuous: Path, daemon: tuple[subprocess.Popen, Path]) -> None:
    process, log = daemon
    ngc, orion = map_key("NGC253", "CO43"), map_key("ORION", "CII")
    everything = {("calibrate", scan_key(s)) for s in ("scan-001", "scan-002", "scan-003")}
    everything |= {("grid", ngc), ("grid", orion)}
    wait_for("the whole DAG", lambda: set(completed_runs()) >= everything, process, log)
    assert set(completed_runs().values()) == {1}

    ingest(continuous, [("scan-004", "NGC253", "CO43")], night="2026-11-02")
    wait_for("the new scan and its map",
             lambda: completed_runs()[("grid", ngc)] == 2, process, log)
    time.sleep(3)  # a few more sensor ticks: nothing else may start
    runs = completed_runs()
    assert runs[("calibrate", scan_key("scan-004"))] == 1
    assert runs[("grid", orion)] == 1  # untouched by the new scan
    assert sum(runs.values()) == 7
    with session_scope() as session:
        reasons = set(session.scalars(sa.select(ExecutedReductionStep.trigger_reason)))
        in_flight = session.scalar(sa.select(sa.func.count()).where(
            ExecutedReductionStep.status != RunStatus.COMPLETED))
    assert reasons == {"no_completed_run", "inputs_changed"}
    assert in_flight == 0
    assert PIPELINE in log.read_text()


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the daemon test covers both
def test_manual_pipeline_runs_only_what_a_backfill_asks(
        manual: Path, daemon_env: dict[str, str], daemon: tuple[subprocess.Popen, Path],
        tmp_path: Path) -> None:
    process, log = daemon
    synced = run_cli([str(BIN / "ccat-wm"), "partitions", "sync", PIPELINE], daemon_env)
    assert f"{PIPELINE}__executed_obs_unit: 3 new partition(s)" in synced
    workspace = str(tmp_path / "workspace.yaml")
    scans = [scan_key(s) for s in ("scan-001", "scan-002")]
    run_cli([str(BIN / "dagster"), "job", "backfill", "-w", workspace, "--noprompt",
             "-j", f"{PIPELINE}__executed_obs_unit", "--partitions", ",".join(scans)], daemon_env)
    wait_for("the backfilled scans",
             lambda: set(completed_runs()) == {("calibrate", k) for k in scans}, process, log)
    ngc = map_key("NGC253", "CO43")
    run_cli([str(BIN / "dagster"), "job", "backfill", "-w", workspace, "--noprompt",
             "-j", f"{PIPELINE}__source_line", "--partitions", ngc], daemon_env)
    wait_for("the backfilled map", lambda: completed_runs()[("grid", ngc)] == 1, process, log)
    time.sleep(3)
    assert sum(completed_runs().values()) == 3  # no sensor: nothing else ran
