"""A code server's run workers are forked from a forkserver that imported Dagster and this
code location once (``ccat_assets/codelocation/preloaded_workers.py``).

Here: the preloaded imports leave nothing a fork would share (no thread, no socket, no open
file), a code server's multiprocessing context is replaced only when the setting allows, and
its forkserver is started by the sensors' warm-up when runs are coming, not as it loads.
That the real code server's run worker is the forkserver's child is asserted where a real
daemon runs one (``tests/reliability/test_rel_run_worker_killed.py``).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from dagster._grpc.server import DagsterApiServer

from ccat_assets.codelocation import preloaded_workers
from tests.conftest import PG_URL
from tests.execution.conftest import apply_and_ingest
from tests.factories import pipeline_spec

ROOT = Path(__file__).resolve().parents[2]

_REPORT = """
import json, os, threading
from ccat_assets.codelocation.preloaded_workers import PRELOAD
for name in PRELOAD:
    __import__(name)
fds = {}
for fd in map(int, os.listdir("/proc/self/fd")):
    try:
        fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # the descriptor that listed the directory, closed since
        pass
print(json.dumps({"threads": threading.active_count(), "fds": fds}))
"""


def test_preloading_opens_nothing_a_fork_would_share() -> None:
    """Imported as the forkserver imports them, with an ops-db configured: one thread, and
    no descriptor but the standard streams."""
    env = {**os.environ, "CCAT_OPS_DB_URL": PG_URL}
    out = subprocess.run([sys.executable, "-c", _REPORT], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report["threads"] == 1
    others = {fd: target for fd, target in report["fds"].items() if int(fd) > 2}
    assert others == {}, others
    assert not [t for t in report["fds"].values() if t.startswith("socket:")]


def _server() -> DagsterApiServer:
    """A code server object as Dagster's ``__init__`` leaves its context (nothing served)."""
    server = DagsterApiServer.__new__(DagsterApiServer)
    server._mp_ctx = multiprocessing.get_context("spawn")  # noqa: SLF001
    return server


def test_a_code_server_forks_its_run_workers_when_the_setting_allows() -> None:
    server = _server()
    assert preloaded_workers.preload_run_workers(enabled=False) == 0
    assert server._mp_ctx.get_start_method() == "spawn"  # noqa: SLF001
    assert preloaded_workers.preload_run_workers(enabled=True) >= 1
    assert server._mp_ctx.get_start_method() == "forkserver"  # noqa: SLF001


def test_a_server_without_the_context_is_left_as_it_is() -> None:
    """A Dagster whose server keeps its context elsewhere: warned, not patched."""
    server = DagsterApiServer.__new__(DagsterApiServer)
    preloaded_workers.preload_run_workers(enabled=True)
    assert not hasattr(server, preloaded_workers.SERVER_CONTEXT_ATTRIBUTE)


_WARM = """
import json, multiprocessing, os, time
import dagster as dg
from dagster._grpc.server import DagsterApiServer
from ccat_assets.codelocation import preloaded_workers
from resources.forkserver_warmup import warm_forkserver

def forkservers():
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if parent == os.getpid() and preloaded_workers.FORKSERVER_COMMAND in command:
            found.append(int(pid))
    return found

report = {}
with dg.DagsterInstance.local_temp() as local:
    report["before_preload"] = warm_forkserver(local)
    server = DagsterApiServer.__new__(DagsterApiServer)
    server._mp_ctx = multiprocessing.get_context("spawn")
    preloaded_workers.preload_run_workers(enabled=True)
    report["after_load"] = forkservers()
    report["other_launcher"] = warm_forkserver(dg.DagsterInstance.ephemeral())
    report["after_other_launcher"] = forkservers()
    report["default_launcher"] = warm_forkserver(local)
    deadline = time.monotonic() + 30  # the child shows its command once it has exec'd
    while not forkservers() and time.monotonic() < deadline:
        time.sleep(0.05)
    report["after_warm"] = forkservers()
print(json.dumps(report))
"""


def test_the_forkserver_starts_when_runs_are_coming_not_as_the_code_server_loads() -> None:
    """Loading starts nothing (a code server the daemon replaces every minute, or one on
    Kubernetes, would pay the forkserver's imports for no run); the sensors' warm-up starts it
    where the instance's runs start in this code server, and nowhere else."""
    out = subprocess.run([sys.executable, "-c", _WARM], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report["before_preload"] is False, report
    assert report["after_load"] == [], report
    assert report["other_launcher"] is False and report["after_other_launcher"] == [], report
    assert report["default_launcher"] is True and len(report["after_warm"]) == 1, report


_FORKED_WORKER = """
import json, multiprocessing, sys
from ccat_assets.codelocation.preloaded_workers import PRELOAD
from tests.execution.forkserver_probe import report
context = multiprocessing.get_context("forkserver")
context.set_forkserver_preload(list(PRELOAD))
queue = context.SimpleQueue()
worker = context.Process(target=report, args=(queue, sys.argv[1] or None))
worker.start()
worker.join(120)
print(json.dumps(queue.get()))
"""


def test_a_forked_worker_finds_the_definitions_built_and_no_connection_of_the_build(
    ccat_env: Path, tmp_path: Path,
) -> None:
    """The forkserver builds the code location once (``prebuilt_definitions.py``): a worker
    it forks gets them from ``defs()`` without building, with the applied pipeline's assets,
    and inherits no connection or file of the ops-db the build read."""
    apply_and_ingest(tmp_path, pipeline_spec(tmp_path / "processing"),
                     [("scan-001", "NGC253", "CO43")])
    url = os.environ["CCAT_OPS_DB_URL"]
    database_file = sa.make_url(url).database if url.startswith("sqlite") else ""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _FORKED_WORKER, database_file or ""], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=180, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["built_by_the_forkserver"] is True, out.stderr[-3000:]
    assert report["defs_returns_them"] is True, report
    assert "ccat/chai_test/calibrate" in report["asset_keys"], report
    assert report["inherited_database_handles"] == [], report


def test_without_an_ops_db_the_forkserver_builds_nothing_and_workers_build_their_own(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "CCAT_OPS_DB_URL": f"sqlite:///{tmp_path / 'never-migrated.db'}",
           "CCAT_WORKFLOW_MANAGER_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-c", _FORKED_WORKER.replace(
        "print(json.dumps(queue.get()))", "print(json.dumps(queue.get() if not worker.exitcode "
        "else {'exitcode': worker.exitcode}))"), ""], env=env, cwd=ROOT, capture_output=True,
        text=True, timeout=180, check=False)
    assert "run workers will build the definitions themselves" in out.stderr, out.stderr[-3000:]
