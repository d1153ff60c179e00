"""SIGKILL of the run worker, for real: ``execute_partition`` runs in a child process that is
killed with ``kill -9`` while its local job is RUNNING, or while it collects the outputs.
Calling ``execute_partition`` again for the same (step, sub-group), as Dagster's retry would,
re-attaches to the same job (no second job directory, no second submission), finishes it,
and records every product exactly once. On both databases.

The worker is killed where it paused at a fault point (:mod:`ccat_assets.fault_points`):
``job-running`` right after it marked the row RUNNING, ``in-collection`` inside the
collection transaction with the products added but not committed. No race with a clock:
the kill lands there every time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from ccat_assets import fault_points
from ccat_assets.execution.execute import execute_partition
from ccat_assets.opsdb import RunStatus
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

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).parent / "run_worker.py"


def _start_worker(log: Path, point: str) -> subprocess.Popen[bytes]:
    """The worker, paused at ``point`` (marker file ``<log>.fault``)."""
    env = {**os.environ, **fault_points.arm(point, log.with_suffix(".fault"))}
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, str(WORKER), PIPELINE, STEP, KEY], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, env=env)


def _kill_at_fault_point(worker: subprocess.Popen[bytes], log: Path) -> None:
    try:
        pid = fault_points.wait_paused(log.with_suffix(".fault"), 60,
                                       alive=lambda: worker.poll() is None)
    except AssertionError as exc:
        raise AssertionError(f"{exc}:\n{log.read_text()[-2000:]}") from None
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    assert pid == worker.pid


def _finish_again_and_check(n_science: int) -> None:
    before = runs()[0]
    outcome = execute_partition(local_services(), pipeline_name=PIPELINE, step_name=STEP,
                                sub_group_key=KEY, dagster_run_id="retry-1",
                                own_run_ids=["worker-1"])  # the retry's parent run
    assert outcome.reattached and outcome.run_id == before.id
    assert outcome.job_id == before.hpc_job_id
    assert outcome.status == RunStatus.COMPLETED
    [run] = runs()  # one ExecutedReductionStep, no second attempt
    assert run.status == RunStatus.COMPLETED and run.exit_code == 0
    assert job_dirs() == [run.hpc_job_id]  # one job, never submitted twice
    paths = product_paths(run.id)
    assert len(paths) == len(set(paths))  # each product exactly once
    science = [p for p in paths if p.startswith("output/science/")]
    assert len(science) == n_science
    on_disk = sorted(p.relative_to(run.run_dir).as_posix()
                     for p in (Path(run.run_dir) / "output" / "science").iterdir())
    assert sorted(science) == on_disk
    assert Counter(Path(p).parts[0] for p in paths) == {"output": n_science, "logs": 3}
    assert_no_live_in_flight_rows()


def test_worker_killed_while_its_job_runs_reattaches(make_pipeline, tmp_path: Path) -> None:
    make_pipeline({"sleep_s": 3, "n_files": 2})
    worker = _start_worker(tmp_path / "worker.log", "job-running")
    _kill_at_fault_point(worker, tmp_path / "worker.log")
    [run] = runs()
    assert run.status == RunStatus.RUNNING and run.hpc_job_id  # left in flight by the crash
    assert local_services().backend.status([run.hpc_job_id])[run.hpc_job_id].state == "running"
    _finish_again_and_check(n_science=3)  # two parts and echo.json


def test_worker_killed_while_collecting_reattaches(make_pipeline, tmp_path: Path) -> None:
    """Killed inside the collection transaction of 300 files, with every product added."""
    make_pipeline({"n_files": 300})
    worker = _start_worker(tmp_path / "worker.log", "in-collection")
    _kill_at_fault_point(worker, tmp_path / "worker.log")
    [run] = runs()
    # killed inside collection: its transaction never committed, nothing is recorded
    assert run.status == RunStatus.COLLECTING_RESULTS
    assert product_paths(run.id) == []
    _finish_again_and_check(n_science=301)
