"""The run launcher of a single-host instance: Dagster's default one, plus a worker health check.

Dagster's ``DefaultRunLauncher`` asks the code server to start each run worker as a process of
its own, and cannot tell run monitoring whether that process still lives. A worker killed
with ``kill -9`` (or taken down with its code server when the daemon's process group dies)
left its Dagster run STARTED for ever. Its ExecutedReductionStep stayed in flight and its
(step, sub-group) stayed blocked, because reconciliation treats a STARTED run as live.

This launcher launches exactly as the default one does, and answers run monitoring's health
check. A dead worker is reported as FAILED. Monitoring then marks the run FAILURE, Dagster's
run retries launch a retry (``run_retries`` in ``dagster.yaml``), and the retried asset re-attaches
to the row's HPC job, which kept running. Nothing is submitted twice.

Which process is the worker: the worker's first event in the event log, "Started process for
run (pid: N)", carries its pid and the time it was written. The check runs where run
monitoring runs, in ``dagster-daemon``. It judges only workers that ran on the daemon's host:
the code server's address (the run's gRPC tag) must be a loopback address or this host's
name. For any other run (a remote code server, a run executed in a CLI process) nothing can be
known, and the worker is reported RUNNING with the reason. Dagster would fail the run on an
answer of UNKNOWN, and a live run must never be failed. Kubernetes deployments use
``K8sRunLauncher``, whose own check asks the Kubernetes API about the run's Job.
"""

from __future__ import annotations

import json
import socket
from collections import OrderedDict

import dagster as dg
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._serdes import ConfigurableClassData

from ccat_assets.dagster_face.process_liveness import announced_process_alive

#: Dagster's message on a run worker's first event (``dagster/_grpc/impl.py``).
STARTED_PREFIX = "Started process for run (pid: "
#: Engine events searched for it. It is the worker's first event, so a few suffice.
EVENTS_SEARCHED = 50
#: Announcements remembered (one per run checked); the oldest are forgotten first.
ANNOUNCEMENTS_KEPT = 4096
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})


class LocalWorkerRunLauncher(dg.DefaultRunLauncher):
    """``DefaultRunLauncher`` that tells run monitoring when a run's worker process is gone."""

    def __init__(self, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(inst_data=inst_data)
        # A worker announces itself once, so its (pid, time) never changes: run monitoring
        # asks about every STARTED run on every poll, and must not read its events each time.
        self._announcements: OrderedDict[str, tuple[int, float]] = OrderedDict()

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        where = _worker_host(run)
        if where is not None:
            return _unchecked(f"the run worker ran on {where}, not on this host")
        announced = self._announcement(run.run_id)
        if announced is None:
            return _unchecked("the run worker's pid is not in the event log")
        pid, announced_at = announced
        liveness = announced_process_alive(pid, announced_at)
        status = WorkerStatus.RUNNING if liveness.alive else WorkerStatus.FAILED
        return CheckRunHealthResult(status, f"run worker: {liveness.reason}",
                                    run_worker_id=str(pid))

    def _announcement(self, run_id: str) -> tuple[int, float] | None:
        """The run worker's announcement, read once per run and then remembered."""
        if run_id in self._announcements:
            self._announcements.move_to_end(run_id)
            return self._announcements[run_id]
        announced = _read_announcement(self._instance, run_id)
        if announced is not None:  # not yet written is asked again at the next poll
            self._announcements[run_id] = announced
            while len(self._announcements) > ANNOUNCEMENTS_KEPT:
                self._announcements.popitem(last=False)
        return announced


def _unchecked(why: str) -> CheckRunHealthResult:
    return CheckRunHealthResult(WorkerStatus.RUNNING, f"not checked: {why}")


def _worker_host(run: dg.DagsterRun) -> str | None:
    """None when the run's worker ran on this host, else where it ran (as far as known)."""
    info = run.tags.get(GRPC_INFO_TAG)
    if info is None:
        return "no code server (the run was not launched by this launcher)"
    try:
        host = str(json.loads(info).get("host", ""))
    except (ValueError, AttributeError):
        host = ""
    if host in _LOOPBACK or host in {socket.gethostname(), socket.getfqdn()}:
        return None
    return f"code server host {host or '?'}"


def _read_announcement(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The pid the run worker announced and when, from its first event."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=EVENTS_SEARCHED).records
    for record in records:
        entry = record.event_log_entry
        if not (entry.dagster_event and entry.message.startswith(STARTED_PREFIX)):
            continue
        data = entry.dagster_event.engine_event_data
        pid = data.metadata.get("pid") if data else None
        if pid is not None and str(pid.value).isdigit():
            return int(pid.value), entry.timestamp
    return None
