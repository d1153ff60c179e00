"""A real ``dagster-daemon`` for integration tests: its DAGSTER_HOME and workspace file,
starting, stopping and killing it, and waiting on the ops-db while it works.

A conftest or test module makes the fixtures ``daemon_env`` and ``daemon`` available by
importing ``daemon_env_fixture`` and ``daemon_fixture`` from here; ``served_env``
(``tests/gaps/conftest.py``) and, with the ops-db on PostgreSQL, ``postgres_dagster_home``
(``tests/deploy/conftest.py``) must be in scope as well.
"""

from __future__ import annotations

import contextlib
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

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TIMEOUT_S = 100


def completed_runs() -> Counter[tuple[str, str]]:
    """How many COMPLETED ExecutedReductionSteps each (step, sub-group) has."""
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


def disagreements(home: Path) -> list[str]:
    """What ``ccat-wm check`` finds between the Dagster instance at ``home`` and the ops-db."""
    import dagster as dg

    from ccat_assets.consistency.snapshot import check_pipelines

    with dg.DagsterInstance.from_config(str(home)) as instance, session_scope() as session:
        return [f"{f.kind} {f.step} {f.key}: {f.detail}"
                for f in check_pipelines(instance, session)]


def run_cli(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=180, check=False)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def wait_for(what: str, done: Callable[[], bool], daemon: subprocess.Popen[bytes],
             log: Path, timeout_s: float = TIMEOUT_S, interval_s: float = 1.0) -> None:
    """Poll ``done`` until true; fail at once if the daemon exits or a run FAILED."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return
        assert daemon.poll() is None, f"the daemon exited:\n{log.read_text()[-3000:]}"
        assert not failed_runs(), failed_runs()
        time.sleep(interval_s)
    pytest.fail(f"timed out waiting for {what}; completed: {dict(completed_runs())}\n"
                f"{log.read_text()[-3000:]}")


def start_daemon(env: dict[str, str], workspace: Path, log: Path) -> subprocess.Popen[bytes]:
    """``dagster-daemon run`` in a session of its own, so that its process group holds the
    daemon, the code server it starts and the run workers that code server spawns. Output is
    appended to ``log`` (a restarted daemon adds to the same file)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
            env=env, cwd=workspace.parent, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)


def stop_daemon(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole process group; SIGKILL to it if the daemon is not gone within
    30 s, or if any other process of the group (a code server) outlives it by 10 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            kill_daemon(process)
            return
    deadline = time.monotonic() + 10
    while group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if group_members(process.pid):
        kill_daemon(process)


def kill_daemon(process: subprocess.Popen[bytes]) -> None:
    """``kill -9`` of the whole process group: daemon, code server and run workers at once;
    returns once none of them is alive any more (zombies aside)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    deadline = time.monotonic() + 10  # SIGKILL is delivered asynchronously
    while group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not group_members(process.pid), f"survived kill -9: {group_members(process.pid)}"


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of the process group ``pgid``, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def forked_by(pid: int) -> str:
    """The command line of ``pid``'s parent: a run worker's is the code server's forkserver
    (``ccat_assets/codelocation/preloaded_workers.py``)."""
    ppid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    return (Path("/proc") / str(ppid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.fixture(name="daemon_env")
def daemon_env_fixture(served_env: Path, tmp_path: Path, request: pytest.FixtureRequest
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


@pytest.fixture(name="daemon")
def daemon_fixture(daemon_env: dict[str, str], tmp_path: Path
           ) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A running daemon and its log file; stopped (its whole process group) afterwards."""
    log = tmp_path / "daemon.log"
    process = start_daemon(daemon_env, tmp_path / "workspace.yaml", log)
    try:
        yield process, log
    finally:
        stop_daemon(process)
