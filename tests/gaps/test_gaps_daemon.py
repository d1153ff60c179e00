"""End to end with a real ``dagster-daemon``: data arrives, the gap sensor launches the whole
DAG by itself (queued run coordinator, run workers, the local backend running the test
program), and new data later reprocesses only what it touches."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from ccat_assets.opsdb import ExecutedReductionStep, ReductionStep, RunStatus
from ccat_assets.opsdb.session import session_scope
from tests.gaps.gapkit import PIPELINE, SCANS, apply_pipeline, ingest, map_key, scan_key

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TIMEOUT_S = 100


def completed_runs() -> Counter[tuple[str, str]]:
    with session_scope() as session:
        rows = session.execute(
            sa.select(ReductionStep.name, ExecutedReductionStep.sub_group_key)
            .join(ReductionStep, ReductionStep.id == ExecutedReductionStep.reduction_step_id)
            .where(ExecutedReductionStep.status == RunStatus.COMPLETED)).all()
    return Counter((step, key) for step, key in rows)


def failed_runs() -> list[str]:
    with session_scope() as session:
        return list(session.scalars(sa.select(ExecutedReductionStep.error_message).where(
            ExecutedReductionStep.status == RunStatus.FAILED)))


def run_cli(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=180, check=False)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def wait_for(what: str, done: Callable[[], bool], daemon: subprocess.Popen[bytes],
             log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if done():
            return
        assert daemon.poll() is None, f"the daemon exited:\n{log.read_text()[-3000:]}"
        assert not failed_runs(), failed_runs()
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}; completed: {dict(completed_runs())}\n"
                f"{log.read_text()[-3000:]}")


@pytest.fixture
def daemon_env(served_env: Path, tmp_path: Path, request: pytest.FixtureRequest
               ) -> dict[str, str]:
    """A fresh DAGSTER_HOME and a workspace file. With the ops-db on PostgreSQL, the Dagster
    instance is on PostgreSQL too, configured by the production deploy/dagster.postgres.yaml;
    on SQLite it is the repository's embedded dagster.yaml."""
    if request.getfixturevalue("db_url").startswith("postgresql"):
        home = request.getfixturevalue("postgres_dagster_home")
    else:
        home = tmp_path / "dagster-home"
        home.mkdir()
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    (tmp_path / "workspace.yaml").write_text(yaml.safe_dump({"load_from": [{"python_module": {
        "module_name": "ccat_assets.definitions", "location_name": "ccat_assets.definitions",
        "working_directory": str(ROOT)}}]}))
    env = {**os.environ, "DAGSTER_HOME": str(home),
           "CCAT_WORKFLOW_MANAGER_SENSOR_INTERVAL_SECONDS": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    # Create the instance before the daemon starts (a brand-new SQLite DAGSTER_HOME raced).
    subprocess.run([str(BIN / "dagster"), "instance", "migrate"], env=env, check=True,
                   capture_output=True, timeout=120)
    return env


@pytest.fixture
def daemon(daemon_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[subprocess.Popen, Path]]:
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(tmp_path / "workspace.yaml")],
            env=daemon_env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        yield process, log
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


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


@pytest.fixture
def manual(served_env: Path, tmp_path: Path) -> Path:
    apply_pipeline(tmp_path, trigger={"type": "MANUAL"})
    ingest(tmp_path, SCANS)
    return tmp_path


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
