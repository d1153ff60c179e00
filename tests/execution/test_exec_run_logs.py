"""What a run's Dagster log says about its job: the program's output lines while the job
runs, its state changes (a SLURM job held PENDING with the reason, then RUNNING on its node),
and, when it failed, a Dagster failure carrying the exit code and the program's last stderr
lines. Real Dagster instance and local backend; the real loopback SLURM cluster."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from ccat_assets.definitions import load_definitions
from ccat_assets.execution.execute import RunFailed, execute_partition
from ccat_assets.grouping import subgroup_key
from ccat_assets.settings import get_settings
from resources.apptainer import HostRuntime
from resources.backends.slurm import SlurmBackend
from resources.backends.ssh import SSHTarget
from resources.staging import make_stager
from tests.execution.conftest import apply_and_ingest
from tests.factories import chatty_spec

SCAN = ("scan-001", "NGC253", "CO43")
KEY = subgroup_key(["executed_obs_unit"], ["scan-001"])
ASSET = dg.AssetKey(["ccat", "chai_test", "calibrate"])


def _eventually(what: str, found: Callable[[], bool], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not found():
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout_s:.0f} s: {what}")
        time.sleep(0.2)


def _messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id)]


class Watcher(threading.Thread):
    """Reads the run's event log from beside the run; releases the program (which waits for
    the release file) only once its first lines are in the log, noting what it saw then."""

    def __init__(self, instance: dg.DagsterInstance, release: Path):
        super().__init__(daemon=True)
        self.instance, self.release = instance, release
        self.seen_while_running: list[str] = []

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                runs = self.instance.get_runs(limit=1)
                if runs:
                    messages = _messages(self.instance, runs[0].run_id)
                    if any("chatty says 2" in m for m in messages):
                        self.seen_while_running = messages
                        return
                time.sleep(0.2)
        finally:
            self.release.touch()  # never leave the program waiting


def test_a_failing_programs_output_reaches_the_dagster_log_while_it_runs(
        ccat_env: Path, tmp_path: Path) -> None:
    release = tmp_path / "release"
    apply_and_ingest(tmp_path, chatty_spec(tmp_path / "processing", stdout_lines=3,
                                           release_file=str(release), stderr_lines=30,
                                           exit_code=1), [SCAN])
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("chai_test__executed_obs_unit", [KEY])
        watcher = Watcher(instance, release)
        watcher.start()
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            partition_key=KEY, instance=instance, asset_selection=[ASSET],
            raise_on_error=False)
        watcher.join(10)
        messages = _messages(instance, result.run_id)

    # while the job ran (its program was still waiting for the release) the log had its
    # stdout lines, the staging and submission lines and the job running on this host
    seen = "\n".join(watcher.seen_while_running)
    assert "chatty says 0" in seen and "chatty says 2" in seen, messages
    assert "chatty error" not in seen  # written only after the release
    assert "staging 2 files" in seen and "submitted local job" in seen
    assert f"running on {__import__('socket').gethostname()}" in seen
    # afterwards: the stderr lines (20 per poll at most, the rest marked as skipped)
    stderr_messages = [m for m in messages if " stderr:\n" in m]
    assert stderr_messages and "chatty error 29" in stderr_messages[-1]
    assert sum(m.count("chatty says 0") for m in messages) == 1  # never repeated

    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    data = failure.step_failure_data.user_failure_data
    assert data.description.startswith(f"calibrate/{KEY}: exit code 1")
    tail = data.description.split("last 20 lines of stderr:\n", 1)[1].splitlines()
    assert tail == [f"chatty error {i} ({KEY})" for i in range(10, 30)]
    assert data.metadata["exit_code"].value == 1
    assert "chatty error 29" in data.metadata["stderr (last lines)"].value


@pytest.mark.integration
def test_a_held_slurm_job_logs_its_pending_reason_then_running_on_its_node(
        ccat_env: Path, tmp_path: Path, slurm_target: SSHTarget, slurm_settings_env: None,
        make_services) -> None:
    release = tmp_path / "release"
    spec = chatty_spec(tmp_path / "processing", stdout_lines=2, stderr_lines=3, exit_code=2,
                       release_file=str(release))
    spec["locations"][0]["host"] = f"{slurm_target.user}@{slurm_target.host}:{slurm_target.port}"
    apply_and_ingest(tmp_path, spec, [SCAN])
    backend = SlurmBackend.from_settings(get_settings())
    backend.extra_sbatch_args = ["--hold"]  # submitted held: PENDING (JobHeldUser)
    lines: list[str] = []
    services = make_services(backend, HostRuntime(), make_stager, log=lines.append)
    failures: list[RunFailed] = []

    def run() -> None:
        try:
            execute_partition(services, pipeline_name="chai_test", step_name="calibrate",
                              sub_group_key=KEY, dagster_run_id="held-1")
        except RunFailed as exc:
            failures.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    _eventually("the held job's pending line", lambda: any("JobHeldUser" in x for x in lines))
    job_id = next(x for x in lines if "JobHeldUser" in x).split(" job ")[1].split()[0]
    assert backend.ssh.run(["scontrol", "release", job_id]).ok
    try:  # the program waits for the release file: it is RUNNING until then
        _eventually("the running line", lambda: any(" running on " in x for x in lines))
        _eventually("its stdout", lambda: any("chatty says 1" in x for x in lines))
    finally:
        release.touch()
    worker.join(180)
    assert not worker.is_alive()

    nodes = backend.ssh.run(["sinfo", "-h", "-N", "-o", "%N"]).stdout.split()
    pending = next(i for i, x in enumerate(lines) if f"job {job_id} pending" in x)
    running = next(i for i, x in enumerate(lines) if f"job {job_id} running on " in x)
    assert "JobHeldUser" in lines[pending] and pending < running
    assert lines[running].split(" running on ")[1].split()[0] in nodes
    assert sum("JobHeldUser" in x for x in lines) == 1  # once, not every poll
    assert any("stdout:\n" in x and "chatty says 1" in x for x in lines)
    [failure] = failures
    assert failure.exit_code == 2 and failure.reason == "exit code 2"
    assert failure.log_tail == [f"chatty error {i} ({KEY})" for i in range(3)]
