"""``kill -9`` of the real Dagster run worker, on a real daemon, with the job on real SLURM.

The gap sensor of a one-step CONTINUOUS pipeline launches a run for one scan. The run worker
pauses at a fault point (:mod:`ccat_assets.fault_points`): ``after-submit`` (its SLURM job
submitted and the id recorded, the row SUBMITTED) or ``job-running`` (the job seen running on
SLURM, the row RUNNING). The pid the paused process wrote must be the one the run's worker
announced in the event log ("Started process for run (pid: N)"), a process of the daemon's
process group. The test kills that process with SIGKILL, in one of two ways:

* ``worker``: the worker alone. The daemon and its code server live on; the code server
  sees its child gone and fails the run (or run monitoring does, whichever comes first).
* ``worker-and-daemon``: the worker, then the daemon's whole process group (daemon, code
  server and worker), as when the machine's service manager or the OOM killer takes it down.
  Nothing is left to notice: the test checks that the Dagster run is still STARTED and the
  row still RUNNING (the state that used to last for ever), then starts the daemon again.
  The restarted daemon starts a new code server, and its run monitoring fails the run on the
  verdict of the instance's ``LocalWorkerRunLauncher``: the test requires that verdict.

With run retries (the production configuration), Dagster's retry must re-attach to the same
SLURM job: the run completes, ``sacct`` shows exactly one job of the run's name (no second
``sbatch``), one ExecutedReductionStep with every product recorded once, and Dagster shows
the partition materialized by the retry. Without run retries (and no gap retries for the
step), the failed run's row must be settled FAILED by the run-failure sensor and
reconciliation, with its one job cancelled and no product but logs.

A further case stops ``slurmd`` while the job runs, as a crash of the compute node would
(slurmd and the job's step daemon with its program killed, the node marked DOWN as
slurmctld does once ``SlurmdTimeout`` passes): the run ends FAILED with the reason, and once
slurmd is back the gap sensor retries the pair within its ``max_retries``, with one new job.

Timing is printed, never asserted: each wait has a generous timeout.

Integration: PostgreSQL for the ops-db and for the Dagster instance (the production
``deploy/dagster.postgres.yaml``, unchanged but for run retries in the no-retry case), the
loopback SLURM cluster over SSH, and a real ``dagster-daemon`` with its code server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ccat_assets import fault_points
from ccat_assets.codelocation.preloaded_workers import FORKSERVER_COMMAND
from ccat_assets.dagster_face.run_launcher import STARTED_PREFIX
from ccat_assets.execution.execute import job_name
from ccat_assets.opsdb import RunStatus
from resources.backends.ssh import SSHConnection, SSHTarget
from tests.daemonkit import (  # noqa: F401 - daemon_env_fixture is the fixture daemon_env
    daemon_env_fixture,
    disagreements,
    forked_by,
    group_members,
    kill_daemon,
    start_daemon,
    stop_daemon,
)
from tests.deploy.conftest import postgres_dagster_home  # noqa: F401 - fixture
from tests.execution.conftest import apply_and_ingest
from tests.gaps.conftest import served_env  # noqa: F401 - fixture
from tests.reliability.conftest import (
    KEY,
    PIPELINE,
    SCAN,
    STEP,
    assert_no_live_in_flight_rows,
    fault_spec,
    product_paths,
    product_types,
    runs,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ASSET = dg.AssetKey(["ccat", PIPELINE, STEP])
PARAMS = {"sleep_s": 6}
TIMEOUT_S = 150


def _slurm_env(target: SSHTarget) -> dict[str, str]:
    values = {"HPC_BACKEND": "slurm", "SLURM_HOST": target.host, "SLURM_PORT": str(target.port),
              "SLURM_USER": target.user, "SLURM_KEY_PATH": str(target.key_path),
              "SLURM_KNOWN_HOSTS": str(target.known_hosts),
              "SLURM_PARTITION": os.environ.get("CCAT_TEST_SLURM_PARTITION", ""),
              "SLURM_POLL_MIN_SECONDS": "0.5", "SLURM_POLL_MAX_SECONDS": "1"}
    return {f"CCAT_WORKFLOW_MANAGER_{k}": v for k, v in values.items()}


def _configure(home: Path, *, retries: bool) -> None:
    """Check that the instance is the production one; turn run retries off if asked."""
    path = home / "dagster.yaml"
    config = yaml.safe_load(path.read_text())
    assert config["run_launcher"]["class"] == "LocalWorkerRunLauncher"
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]
    config["run_retries"]["enabled"] = retries
    path.write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture
def ssh(slurm_target: SSHTarget) -> Iterator[SSHConnection]:
    connection = SSHConnection(slurm_target)
    try:
        yield connection
    finally:
        connection.close()


def _sacct_jobs(ssh: SSHConnection, name: str) -> list[str]:
    result = ssh.run(["sacct", "-n", "-X", "-P", "--starttime=now-1days", f"--name={name}",
                      "--format=JobID"])
    assert result.ok, result.stderr
    return [line for line in result.stdout.split() if line]


def worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid the run's worker announced in its first event."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        if entry.message.startswith(STARTED_PREFIX):
            return int(entry.message[len(STARTED_PREFIX):].split(")")[0])
    return None


class Daemon:
    """The current daemon process; a restart replaces it, and the test stops the last one."""

    def __init__(self, env: dict[str, str], workspace: Path, log: Path):
        self.env, self.workspace, self.log = env, workspace, log
        self.process = start_daemon(env, workspace, log)

    def restart(self) -> None:
        self.process = start_daemon(self.env, self.workspace, self.log)

    def wait(self, what: str, done: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if done():
                return
            assert self.process.poll() is None, \
                f"the daemon exited:\n{self.log.read_text()[-3000:]}"
            time.sleep(0.1)
        pytest.fail(f"timed out waiting for {what}; rows: "
                    f"{[(r.id, r.status.value, r.dagster_run_id) for r in runs()]}\n"
                    f"{self.log.read_text()[-4000:]}")


def _step_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """The Dagster runs of the step, oldest first."""
    return list(reversed([r for r in instance.get_runs() if r.tags.get("ccat/step") == STEP]))


def _failure_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [e.dagster_event.message or "" for e in instance.all_logs(
        run_id, of_type=dg.DagsterEventType.RUN_FAILURE) if e.dagster_event]


def _paused_worker(d: Daemon, marker: Path) -> int:
    """The pid of the run worker paused at the armed fault point."""
    try:
        return fault_points.wait_paused(marker, TIMEOUT_S, alive=lambda: d.process.poll() is None)
    except AssertionError as exc:
        pytest.fail(f"{exc}; rows: {[(r.id, r.status.value) for r in runs()]}\n"
                    f"{d.log.read_text()[-4000:]}")


@pytest.fixture
def daemon(daemon_env: dict[str, str], slurm_target: SSHTarget, tmp_path: Path
           ) -> Iterator[Callable[..., Daemon]]:
    """Starts the daemon when called (after the test set up its pipeline); stops the last."""
    started: list[Daemon] = []

    def start(extra_env: dict[str, str] | None = None) -> Daemon:
        started.append(Daemon({**daemon_env, **_slurm_env(slurm_target), **(extra_env or {})},
                              tmp_path / "workspace.yaml", tmp_path / "daemon.log"))
        return started[-1]
    try:
        yield start
    finally:
        for each in started:
            stop_daemon(each.process)


#: Each way of killing on at least one ops-db database, the quickest on both: what a daemon's
#: death adds is Dagster's (run monitoring, the launcher's verdict, the retry), and the ops-db
#: writes it leads to are the claim and settling that the worker's death leads to as well.
KILLS = [
    pytest.param("sqlite", "worker", True, id="worker-sqlite"),
    pytest.param("postgresql", "worker", True, id="worker-postgresql"),
    pytest.param("postgresql", "worker-and-daemon", True, id="worker-and-daemon-postgresql"),
    pytest.param("sqlite", "worker-and-daemon", False, id="worker-and-daemon-no-retry-sqlite"),
]


@pytest.mark.parametrize("db_url, who, retries", KILLS, indirect=["db_url"])
def test_killed_run_worker_is_noticed(
        who: str, retries: bool, daemon_env: dict[str, str], daemon: Callable[..., Daemon],
        ssh: SSHConnection, tmp_path: Path) -> None:
    """Killed while its job RUNS on SLURM."""
    _kill_run_worker(who, retries, "job-running", daemon_env, daemon, ssh, tmp_path)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_run_worker_killed_while_its_job_is_submitted(
        daemon_env: dict[str, str], daemon: Callable[..., Daemon], ssh: SSHConnection,
        tmp_path: Path) -> None:
    """Killed right after ``sbatch``, its job id recorded (the row SUBMITTED; on SLURM the
    job may be pending or already running): the retry re-attaches, no second ``sbatch``."""
    _kill_run_worker("worker", True, "after-submit", daemon_env, daemon, ssh, tmp_path)


def _kill_run_worker(who: str, retries: bool, point: str, daemon_env: dict[str, str],
                     daemon: Callable[..., Daemon], ssh: SSHConnection, tmp_path: Path) -> None:
    home = Path(daemon_env["DAGSTER_HOME"])
    _configure(home, retries=retries)
    spec = fault_spec(tmp_path / "processing", PARAMS)
    spec["pipelines"][0]["trigger"] = {"type": "CONTINUOUS"}
    spec["pipelines"][0]["steps"][0]["max_retries"] = 1 if retries else 0
    apply_and_ingest(tmp_path, spec, [SCAN])

    marker = tmp_path / "fault"
    d = daemon(fault_points.arm(point, marker))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        pid = _paused_worker(d, marker)
        [first] = _step_runs(instance)
        assert first.status == dg.DagsterRunStatus.STARTED
        assert pid == worker_pid(instance, first.run_id), (pid, first.run_id)
        assert pid in group_members(d.process.pid)
        assert FORKSERVER_COMMAND in forked_by(pid)  # preloaded, not spawned
        [row] = runs()  # read while the worker is paused: what the kill leaves behind
        expected = RunStatus.SUBMITTED if point == "after-submit" else RunStatus.RUNNING
        assert row.status == expected and row.dagster_run_id == first.run_id
        job_id = row.hpc_job_id
        assert job_id
        os.kill(pid, signal.SIGKILL)
        t_kill = time.monotonic()
        if who == "worker-and-daemon":
            kill_daemon(d.process)  # and wait until no process of its group lives
            time.sleep(1)  # nothing is left to notice: the run stays STARTED
            assert instance.get_run_by_id(first.run_id).status == dg.DagsterRunStatus.STARTED
            [row] = runs()
            assert row.status == expected and row.dagster_run_id == first.run_id
            d.restart()

        d.wait("the killed run to fail", lambda: instance.get_run_by_id(
            first.run_id).status == dg.DagsterRunStatus.FAILURE)
        t_failed = time.monotonic()
        messages = _failure_messages(instance, first.run_id)
        if retries:
            d.wait("the retry to re-attach and complete",
                   lambda: runs()[0].status == RunStatus.COMPLETED)
            [row] = runs()
            retry = instance.get_run_by_id(row.dagster_run_id or "")
            d.wait("the retry to succeed", lambda: instance.get_run_by_id(
                retry.run_id).status == dg.DagsterRunStatus.SUCCESS)
        else:
            d.wait("the row to be settled", lambda: runs()[0].status == RunStatus.FAILED)
            retry = None
        t_end = time.monotonic()
        all_runs = _step_runs(instance)
        materialized = instance.get_materialized_partitions(ASSET)
    print(f"\n{who} at {point}: run failed {t_failed - t_kill:.1f} s after the kill, "
          f"{'retry completed' if retries else 'row settled'} {t_end - t_kill:.1f} s after it")

    if who == "worker-and-daemon":  # only run monitoring was there to see it
        assert any("run worker" in m and str(pid) in m for m in messages), messages
    [row] = runs()
    assert row.hpc_job_id == job_id
    assert _sacct_jobs(ssh, job_name(PIPELINE, STEP, row.id, row.run_dir)) == [job_id]
    paths = product_paths(row.id)
    assert len(paths) == len(set(paths))  # each product exactly once
    science = Counter(p.split("/")[1] for p in paths if p.startswith("output/"))
    if retries:
        assert retry is not None and [r.run_id for r in all_runs] == [first.run_id, retry.run_id]
        assert retry.parent_run_id == first.run_id
        assert retry.tags.get("dagster/retry_number") == "1"
        assert row.status == RunStatus.COMPLETED and row.dagster_run_id == retry.run_id
        assert science == {"science": 2}  # echo.json and one part
        assert KEY in materialized
    else:
        assert [r.run_id for r in all_runs] == [first.run_id]
        assert row.status == RunStatus.FAILED and first.run_id in (row.error_message or "")
        assert science == {}
        assert KEY not in materialized
    assert_no_live_in_flight_rows()
    assert disagreements(home) == []  # ccat-wm check



STATE = Path(os.environ.get("CCAT_SERVICES_DIR", "/var/lib/ccat-slurm"))
ROOT = Path(__file__).resolve().parents[2]


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def _step_daemons(job_id: str) -> list[int]:
    """The ``slurmstepd`` processes of the job (its batch step)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text.startswith(f"slurmstepd: [{job_id}."):
            pids.append(int(cmdline.parent.name))
    return pids


def _crash_node(ssh: SSHConnection, job_id: str) -> None:
    """What a crash of the compute node does to a running job, on the one loopback node:
    ``slurmd`` and the job's step daemon with its program die (SIGKILL), and the node is
    DOWN. slurmctld itself marks the node DOWN once ``SlurmdTimeout`` (60 s here) passes
    without an answer; the test says so at once, to keep the window in which this shared
    cluster has no node short."""
    slurmd = int((STATE / "run" / "slurmd.pid").read_text().strip())
    assert Path(f"/proc/{slurmd}/comm").read_text().strip() == "slurmd"
    steps = _step_daemons(job_id)
    assert steps, f"no slurmstepd of job {job_id}"
    for pid in [slurmd] + [p for s in steps for p in _descendants(s)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    node = ssh.run(["sinfo", "-h", "-N", "-o", "%N"]).stdout.split()[0]
    result = ssh.run(["scontrol", "update", f"NodeName={node}", "State=DOWN",
                      "Reason=slurmd stopped (reliability test)"])
    assert result.ok, result.stderr


def _start_slurm() -> None:
    """``scripts/services/start-slurm.sh``: starts slurmd again (the running daemons are left
    alone) and waits until the node is back in service (``ReturnToService=2``)."""
    subprocess.run(["bash", str(ROOT / "scripts/services/start-slurm.sh")], check=True,
                   capture_output=True, timeout=120)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_slurmd_down_fails_the_run_and_the_gap_retry_completes(
        daemon_env: dict[str, str], daemon: Callable[..., Daemon], ssh: SSHConnection,
        tmp_path: Path) -> None:
    home = Path(daemon_env["DAGSTER_HOME"])
    _configure(home, retries=True)  # the production configuration
    spec = fault_spec(tmp_path / "processing", PARAMS)
    spec["pipelines"][0]["trigger"] = {"type": "CONTINUOUS"}
    spec["pipelines"][0]["steps"][0]["max_retries"] = 1
    apply_and_ingest(tmp_path, spec, [SCAN])

    marker = tmp_path / "fault"
    d = daemon(fault_points.arm("job-running", marker))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        _paused_worker(d, marker)
        [row] = runs()
        assert row.status == RunStatus.RUNNING and row.hpc_job_id
        first_job = row.hpc_job_id
        try:
            _crash_node(ssh, first_job)
            t_crash = time.monotonic()
            fault_points.release(marker)  # the worker polls its job again
            d.wait("the run to fail", lambda: runs()[0].status == RunStatus.FAILED)
            t_failed = time.monotonic()
        finally:
            fault_points.release(marker)
            _start_slurm()
        t_back = time.monotonic()
        d.wait("the gap sensor's retry to complete", lambda: len(rows := runs()) == 2
               and rows[1].status == RunStatus.COMPLETED)
        t_done = time.monotonic()
        step_runs = _step_runs(instance)
        d.wait("the retry's Dagster run to succeed", lambda: instance.get_run_by_id(
            step_runs[-1].run_id).status == dg.DagsterRunStatus.SUCCESS)
        step_runs = _step_runs(instance)
        materialized = instance.get_materialized_partitions(ASSET)
    print(f"\nslurmd down: run failed {t_failed - t_crash:.1f} s after the crash, slurmd back "
          f"{t_back - t_crash:.1f} s, retry completed {t_done - t_crash:.1f} s after it")

    first, second = runs()
    assert first.status == RunStatus.FAILED
    assert first.error_message == "the node running the job failed", first.error_message
    assert second.status == RunStatus.COMPLETED and second.hpc_job_id != first_job
    assert second.input_fingerprint == first.input_fingerprint and second.retry_count == 1
    # one job per attempt: the first ended with the node, the retry is a new submission
    assert _sacct_jobs(ssh, job_name(PIPELINE, STEP, first.id, first.run_dir)) == [first_job]
    assert _sacct_jobs(ssh, job_name(PIPELINE, STEP, second.id, second.run_dir)) == [
        second.hpc_job_id]
    # Dagster: the failed run, not retried by Dagster (a failed reduction is the gap
    # sensor's to retry), then the gap sensor's retry of the same inputs
    assert [r.status for r in step_runs] == [dg.DagsterRunStatus.FAILURE,
                                             dg.DagsterRunStatus.SUCCESS]
    assert step_runs[1].tags["dagster/run_key"].endswith(":retry1")
    assert step_runs[1].parent_run_id is None
    assert set(product_types(first.id)) <= {"LOG"}
    paths = product_paths(second.id)
    assert len(paths) == len(set(paths))
    assert Counter(p.split("/")[1] for p in paths if p.startswith("output/")) == {"science": 2}
    assert KEY in materialized
    assert_no_live_in_flight_rows()
    assert disagreements(home) == []  # ccat-wm check
