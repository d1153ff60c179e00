"""Every launch path with a real ``dagster-daemon`` and webserver, on both databases.

A MANUAL pipeline, never synced by hand. The daemon's queue is held shut first
(``max_concurrent_runs: 0``), so queued work can be seen as it waits:

1. GraphQL ``launchRun`` of a scan, and ``dagster job backfill --all`` of every scan, queue
   four runs; within a sensor interval each has its PENDING ExecutedReductionStep carrying
   its Dagster run id, and the sub-groups are partitions (nobody ran ``partitions sync``).
2. A queued run terminated through GraphQL (as the UI's "Terminate" does) ends its row
   CANCELLED.
3. With the queue open, every run claims its own row; the scan launched twice is reduced
   once (the second run re-reports it). Two jobs for two scans, no other rows.
4. A second ``backfill --all`` reduces only the scan whose run was canceled; a third submits
   nothing to the backend.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from dagster_graphql import DagsterGraphQLClient

from ccat_assets.opsdb import ExecutedReductionStep, RunStatus
from ccat_assets.opsdb.session import session_scope
from ccat_assets.settings import get_settings
from tests.daemonkit import BIN, ROOT, disagreements, run_cli, start_daemon, stop_daemon
from tests.gaps.gapkit import PIPELINE, SCANS, scan_key

JOB = f"{PIPELINE}__executed_obs_unit"
TIMEOUT_S = 150


def rows() -> list[tuple[str, RunStatus, str | None, str | None]]:
    """(sub-group, status, Dagster run id, trigger reason) of every row, oldest first."""
    with session_scope() as session:
        return [(r.sub_group_key, RunStatus(r.status), r.dagster_run_id, r.trigger_reason)
                for r in session.scalars(sa.select(ExecutedReductionStep)
                                         .order_by(ExecutedReductionStep.id))]


def job_dirs() -> int:
    jobs = get_settings().jobs_dir
    return len([d for d in jobs.iterdir() if not d.name.startswith(".")]) if jobs.exists() else 0


def wait_until(what: str, done: Callable[[], bool], log: Path,
               timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; rows {rows()}\n"
                        f"{log.read_text()[-3000:] if log.exists() else ''}")
        time.sleep(0.5)


def hold_queue(home: Path, held: bool) -> None:
    """Open or shut the instance's run queue (``concurrency.runs.max_concurrent_runs``)."""
    path = home / "dagster.yaml"
    config = yaml.safe_load(path.read_text())
    config.setdefault("concurrency", {}).setdefault("runs", {})["max_concurrent_runs"] = (
        0 if held else 3)
    path.write_text(yaml.safe_dump(config))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_webserver(env: dict[str, str], workspace: Path, port: int,
                    log: Path) -> tuple[subprocess.Popen[bytes], DagsterGraphQLClient]:
    with open(log, "ab") as out:
        server = subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-w", str(workspace), "-h", "127.0.0.1",
             "-p", str(port)], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    deadline = time.monotonic() + 120
    while True:
        try:
            client._execute("{ version }")  # noqa: SLF001 - the client's raw query
            return server, client
        except Exception:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(1)


def partitions(home: Path) -> set[str]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return set(instance.get_dynamic_partitions(f"{PIPELINE}__executed_obs_unit"))


def dagster_runs(home: Path) -> dict[str, dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return {r.run_id: r for r in instance.get_runs()}


def finished(home: Path, run_ids: set[str]) -> bool:
    runs = dagster_runs(home)
    return all(rid in runs and runs[rid].status in (
        dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.CANCELED) for rid in run_ids)


def backfill_all(env: dict[str, str], workspace: Path, log: Path) -> None:
    """``dagster job backfill --all`` of every scan; returns once its runs have finished."""
    home = Path(env["DAGSTER_HOME"])
    before = set(dagster_runs(home))
    run_cli([str(BIN / "dagster"), "job", "backfill", "-w", str(workspace), "--noprompt",
             "-j", JOB, "--all"], env)

    def new_runs() -> set[str]:
        return set(dagster_runs(home)) - before

    wait_until("the backfill's runs", lambda: len(new_runs()) == len(SCANS)
               and finished(home, new_runs()), log)


@pytest.mark.integration
@pytest.mark.slow
# PostgreSQL only, the production ops-db: the launch paths are the same code on both, and the
# daemon on a SQLite ops-db is covered by tests/gaps/test_gaps_daemon.py and the run-worker
# kill tests (this one took 80 s a database).
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_every_launch_path_queues_rows_and_runs_each_scan_once(
        manual: Path, daemon_env: dict[str, str], tmp_path: Path) -> None:
    home, workspace = Path(daemon_env["DAGSTER_HOME"]), tmp_path / "workspace.yaml"
    log = tmp_path / "daemon.log"
    scans = [scan_key(s) for s, _, _ in SCANS]
    hold_queue(home, held=True)
    server, client = start_webserver(daemon_env, workspace, free_port(), tmp_path / "web.log")
    daemon = start_daemon(daemon_env, workspace, log)
    try:
        # 1. GraphQL, then a CLI backfill; nobody syncs partitions by hand
        by_graphql = client.submit_job_execution(JOB, tags={"dagster/partition": scans[0]})
        wait_until("the partitions sensor", lambda: set(scans) <= partitions(home), log)
        run_cli([str(BIN / "dagster"), "job", "backfill", "-w", str(workspace), "--noprompt",
                 "-j", JOB, "--all"], daemon_env)
        wait_until("a PENDING row per queued run", lambda: len(rows()) == 4, log)
        queued = rows()
        assert {r[1] for r in queued} == {RunStatus.PENDING}
        assert Counter(r[0] for r in queued) == Counter({scans[0]: 2, scans[1]: 1, scans[2]: 1})
        assert by_graphql in {r[2] for r in queued}
        assert Counter(r[3] for r in queued) == Counter({"backfill": 3, "manual": 1})
        runs = dagster_runs(home)
        assert {r[2] for r in queued} <= set(runs)
        assert all(runs[r[2]].status == dg.DagsterRunStatus.QUEUED for r in queued)
        gaps = json.loads(run_cli([str(BIN / "ccat-wm"), "gaps", PIPELINE, "--json"],
                                  daemon_env))
        assert {d["key"]: d["reason"] for d in gaps if d["step"] == "calibrate"} == dict.fromkeys(
            scans, "in_flight")  # queued work is in flight, not "fire"

        # 2. terminate one queued backfill run, as the UI does
        canceled = next(r[2] for r in queued if r[0] == scans[2])
        client.terminate_run(canceled)
        wait_until("the canceled run's row", lambda: any(
            r[2] == canceled and r[1] == RunStatus.CANCELLED for r in rows()), log)
        stop_daemon(daemon)

        # 3. open the queue: each run claims its own row
        hold_queue(home, held=False)
        daemon = start_daemon(daemon_env, workspace, log)
        wait_until("every queued run", lambda: finished(home, {r[2] for r in queued}), log)
        after = rows()
        assert Counter((r[0], r[1]) for r in after) == Counter({
            (scans[0], RunStatus.COMPLETED): 1, (scans[1], RunStatus.COMPLETED): 1,
            (scans[2], RunStatus.CANCELLED): 1})
        assert {r[2] for r in after} <= {r[2] for r in queued}  # claimed, never a new row
        assert job_dirs() == 2

        # 4. backfill --all again, twice: only the canceled scan is reduced, then nothing
        backfill_all(daemon_env, workspace, log)
        assert Counter(r[1] for r in rows()) == Counter({
            RunStatus.COMPLETED: 3, RunStatus.CANCELLED: 1})
        assert job_dirs() == 3
        backfill_all(daemon_env, workspace, log)
        assert len(rows()) == 4 and job_dirs() == 3  # nothing new ran
        assert disagreements(home) == []  # ccat-wm check
    finally:
        stop_daemon(daemon)
        server.terminate()
        server.wait(timeout=30)
