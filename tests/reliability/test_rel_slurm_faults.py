"""Faults around the real loopback SLURM cluster (``bash scripts/services/up.sh``):

* a job killed from outside with ``scancel`` ends the run CANCELLED (the backends' mapping of
  a cancelled job; retries count it like a failure) with a reason naming the job, and only
  the logs are kept;
* sshd restarted while the job is polled, with the run's own SSH connection dropped: polling
  reconnects once sshd is back, the run completes, and ``sacct`` shows exactly one job of
  the run's name (nothing was submitted twice).

The sshd restart stops the listener by its pid file (as ``scripts/services/down.sh`` does)
and ends only the sshd session processes that serve this test's connection, so that the
connection really drops (sessions survive a plain listener restart); then it starts sshd
again with ``scripts/services/start-sshd.sh``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ccat_assets.execution.execute import (
    ExecutionServices,
    PollPolicy,
    RunFailed,
    execute_partition,
    job_name,
)
from ccat_assets.opsdb import RunStatus
from ccat_assets.opsdb.session import session_factory
from ccat_assets.settings import get_settings
from resources.apptainer import HostRuntime
from resources.backends.slurm import SlurmBackend
from resources.backends.ssh import SSHConnection, SSHTarget
from resources.staging import make_stager
from tests.reliability.conftest import (
    KEY,
    PIPELINE,
    STEP,
    assert_no_live_in_flight_rows,
    product_types,
    runs,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("CCAT_SERVICES_DIR", "/var/lib/ccat-slurm"))


class Background:
    """``execute_partition`` in a thread, keeping its outcome or its exception."""

    def __init__(self, services: ExecutionServices):
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(services,), daemon=True)
        self.thread.start()

    def _run(self, services: ExecutionServices) -> None:
        try:
            self.result = execute_partition(services, pipeline_name=PIPELINE, step_name=STEP,
                                            sub_group_key=KEY, dagster_run_id="d-slurm")
        except BaseException as exc:  # handed to the test
            self.error = exc

    def join(self, timeout_s: float = 120) -> None:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "execute_partition did not return"


def _services(log: list[str]) -> ExecutionServices:
    settings = get_settings()
    return ExecutionServices(
        sessions=session_factory(), backend=SlurmBackend.from_settings(settings),
        runtime=HostRuntime(), stager_factory=make_stager, base_dir=settings.pipelines_dir,
        log=log.append, poll=PollPolicy(min_s=0.3, max_s=1.0))


def _wait_for(what: str, done: Callable[[], bool], background: Background,
              timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return
        assert background.thread.is_alive(), f"run ended before {what}: {background.error!r}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _running() -> bool:
    rows = runs()
    return bool(rows) and rows[0].status == RunStatus.RUNNING


def _jobs_named(ssh: SSHConnection, name: str) -> list[str]:
    result = ssh.run(["sacct", "-n", "-X", "-P", "--starttime=now-1days", f"--name={name}",
                      "--format=JobID"])
    assert result.ok, result.stderr
    return [line for line in result.stdout.split() if line]


def test_job_cancelled_from_outside_ends_the_run_with_the_reason(
    make_pipeline, slurm_target: SSHTarget, slurm_settings_env: None,
) -> None:
    make_pipeline({"sleep_s": 60})
    background = Background(_services([]))
    _wait_for("the job to run", _running, background)
    [run] = runs()
    outsider = SSHConnection(slurm_target)
    try:
        assert outsider.run(["scancel", run.hpc_job_id]).ok
    finally:
        outsider.close()
    background.join()
    assert isinstance(background.error, RunFailed), background.error
    [run] = runs()
    assert run.status == RunStatus.CANCELLED
    assert f"slurm job {run.hpc_job_id} was cancelled outside the run" in run.error_message
    assert run.finished_at is not None
    assert set(product_types(run.id)) <= {"LOG"}  # nothing of the killed program recorded
    assert_no_live_in_flight_rows()


def _session_pids(client_port: int) -> list[int]:
    """The sshd processes serving the TCP connection from ``client_port``."""
    out = subprocess.run(["ss", "-Htnp", "state", "established"], capture_output=True,
                         text=True, check=True).stdout
    pids: list[int] = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[3].endswith(f":{client_port}") and "sshd" in line:
            pids += [int(p) for p in re.findall(r"pid=(\d+)", line)]
    return pids


def _restart_sshd(client_port: int, down_s: float) -> None:
    pid_file = STATE / "run" / "sshd.pid"
    listener = int(pid_file.read_text().strip())
    assert Path(f"/proc/{listener}/comm").read_text().strip() == "sshd"
    sessions = _session_pids(client_port)
    assert sessions, "no sshd process serves this test's connection"
    os.kill(listener, signal.SIGTERM)
    for pid in sessions:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{listener}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(down_s)
    subprocess.run(["bash", str(ROOT / "scripts/services/start-sshd.sh")], check=True,
                   capture_output=True, timeout=60)


def test_sshd_restart_while_polling_recovers_without_resubmitting(
    make_pipeline, slurm_target: SSHTarget, slurm_settings_env: None,
) -> None:
    make_pipeline({"sleep_s": 8})
    log: list[str] = []
    services = _services(log)
    background = Background(services)
    _wait_for("the job to run", _running, background)
    port = services.backend.ssh.client().get_transport().sock.getsockname()[1]
    # down for longer than the SSH layer's own reconnect attempts (about 1.5 s)
    _restart_sshd(port, down_s=4)
    background.join()
    assert background.error is None, f"{background.error!r}\n" + "\n".join(log)
    outcome = background.result
    assert outcome.status == RunStatus.COMPLETED
    [run] = runs()
    assert run.status == RunStatus.COMPLETED and run.hpc_job_id == outcome.job_id
    assert any("polling" in line and "failed" in line for line in log), log  # it was hit
    checker = SSHConnection(slurm_target)
    try:
        name = job_name(PIPELINE, STEP, run.id, run.run_dir)
        assert _jobs_named(checker, name) == [run.hpc_job_id]
    finally:
        checker.close()
    assert product_types(run.id)["SCIENCE"] == 2  # echo.json and one part
    assert_no_live_in_flight_rows()
