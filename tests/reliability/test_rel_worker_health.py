"""The run launcher's worker health check, on real processes and a real Dagster instance.

A run whose worker announced a pid that is alive is RUNNING. A worker that was killed, has
exited (a zombie not yet reaped), or whose pid now belongs to a younger process is FAILED.
A run this host cannot judge (a remote code server, no announcement) is RUNNING with the
reason: run monitoring fails a run on any other answer, and a live run must never be failed.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import dagster as dg
import pytest
from dagster._core.events import EngineEventData
from dagster._core.launcher.base import WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._core.utils import make_new_run_id

from ccat_assets.dagster_face.process_liveness import announced_process_alive, process_info
from ccat_assets.dagster_face.run_launcher import LocalWorkerRunLauncher


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "60"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_a_live_process_that_announced_itself_is_alive(sleeper) -> None:
    time.sleep(0.05)
    liveness = announced_process_alive(sleeper.pid, time.time())
    assert liveness.alive, liveness.reason


def test_start_time_read_from_proc_is_the_real_one(sleeper) -> None:
    info = process_info(sleeper.pid)
    assert info is not None and abs(info.started_at - time.time()) < 5


def test_a_killed_process_is_dead() -> None:
    process = subprocess.Popen(["sleep", "60"])
    announced = time.time()
    process.kill()
    process.wait()
    liveness = announced_process_alive(process.pid, announced)
    assert not liveness.alive and "no process" in liveness.reason


def test_an_exited_unreaped_process_is_dead() -> None:
    process = subprocess.Popen(["true"])
    announced = time.time()
    deadline = time.monotonic() + 5
    while (info := process_info(process.pid)) is not None and info.state != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        liveness = announced_process_alive(process.pid, announced)
        assert not liveness.alive and "exited" in liveness.reason
    finally:
        process.wait()


def test_a_reused_pid_is_not_the_worker(sleeper) -> None:
    """The pid is live, but its process started long after the announcement."""
    liveness = announced_process_alive(sleeper.pid, time.time() - 600)
    assert not liveness.alive and "another process" in liveness.reason


def _run_announcing(instance: dg.DagsterInstance, pid: int | None, host: str | None
                    ) -> dg.DagsterRun:
    """A STARTED run with the tags and first event a gRPC-launched worker leaves."""
    tags = {GRPC_INFO_TAG: json.dumps({"host": host, "port": 4000})} if host else {}
    run = instance.add_run(dg.DagsterRun(job_name="some_job", run_id=make_new_run_id(),
                                         status=dg.DagsterRunStatus.STARTED, tags=tags))
    if pid is not None:
        instance.report_engine_event(f"Started process for run (pid: {pid}).", run,
                                     EngineEventData.in_process(pid))
    return run


@pytest.fixture
def launcher() -> Iterator[tuple[dg.DagsterInstance, LocalWorkerRunLauncher]]:
    with dg.instance_for_test(overrides={"run_launcher": {
            "module": "ccat_assets.dagster_face.run_launcher", "class": "LocalWorkerRunLauncher"}}
            ) as instance:
        assert isinstance(instance.run_launcher, LocalWorkerRunLauncher)
        yield instance, instance.run_launcher


def test_launcher_reports_a_live_worker_running(launcher, sleeper) -> None:
    instance, run_launcher = launcher
    run = _run_announcing(instance, sleeper.pid, "localhost")
    result = run_launcher.check_run_worker_health(run)
    assert result.status == WorkerStatus.RUNNING and result.run_worker_id == str(sleeper.pid)


def test_launcher_reports_a_killed_worker_failed(launcher) -> None:
    instance, run_launcher = launcher
    worker = subprocess.Popen(["sleep", "60"])
    run = _run_announcing(instance, worker.pid, "127.0.0.1")
    worker.kill()
    worker.wait()
    result = run_launcher.check_run_worker_health(run)
    assert result.status == WorkerStatus.FAILED
    assert f"no process with pid {worker.pid}" in (result.msg or "")


@pytest.mark.parametrize("host, pid, why", [
    ("user-code.example.org", 1, "code server host user-code.example.org"),
    (None, 1, "no code server"),
    ("localhost", None, "pid is not in the event log"),
])
def test_launcher_never_fails_a_run_it_cannot_judge(launcher, host, pid, why) -> None:
    instance, run_launcher = launcher
    run = _run_announcing(instance, pid, host)
    result = run_launcher.check_run_worker_health(run)
    assert result.status == WorkerStatus.RUNNING and why in (result.msg or "")


def test_launcher_reads_each_announcement_once(launcher, sleeper, monkeypatch) -> None:
    """Run monitoring asks about every STARTED run on every poll; the worker's pid and start
    never change, so its events are read once. A run not yet announced is asked again."""
    instance, run_launcher = launcher
    silent = _run_announcing(instance, None, "localhost")
    announced = _run_announcing(instance, sleeper.pid, "localhost")
    reads: list[str] = []
    read = instance.get_records_for_run

    def counting(run_id: str, *args, **kwargs):
        reads.append(run_id)
        return read(run_id, *args, **kwargs)
    monkeypatch.setattr(instance, "get_records_for_run", counting)
    for _ in range(3):
        assert run_launcher.check_run_worker_health(announced).status == WorkerStatus.RUNNING
        assert run_launcher.check_run_worker_health(silent).status == WorkerStatus.RUNNING
    assert reads.count(announced.run_id) == 1 and reads.count(silent.run_id) == 3
    instance.report_engine_event(f"Started process for run (pid: {sleeper.pid}).", silent,
                                 EngineEventData.in_process(sleeper.pid))
    result = run_launcher.check_run_worker_health(silent)
    assert result.run_worker_id == str(sleeper.pid)
