"""The ``local`` backend: a detached, supervised process per job on this machine.

A job's directory holds its spec, the supervisor's pid, the child's pid and the result, so
the job survives a crash of the Dagster run worker and a retried run re-attaches to it by its
deterministic name. Parallelism is bounded by lock-file slots shared by all jobs. A batch is
one job array: one supervisor for all its members, each member with its own directory below
the array's, so it is polled, cancelled and re-attached to like a single job.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ccat_assets.execution.jobs import JobSpec, JobStatus

_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


#: Separates an array's name from a member's index in a member's job id.
ARRAY_SEP = "#"
#: Where local jobs run, as a status names it.
_HOST = socket.gethostname()


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies do not count)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, IndexError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False


class LocalBackend:
    name = "local"

    def __init__(self, jobs_dir: Path, max_parallel: int = 2):
        self.jobs_dir = Path(jobs_dir)
        self.max_parallel = max_parallel

    def _dir(self, job_id: str) -> Path:
        """A job's directory; a member of an array (``<array>#<i>``) has its own below it."""
        name, sep, index = job_id.partition(ARRAY_SEP)
        if (not name or set(name) - _NAME_OK or name.startswith(".")
                or (sep and not index.isdigit())):
            raise ValueError(f"invalid local job id {job_id!r}")
        return self.jobs_dir / name / "tasks" / str(int(index)) if sep else self.jobs_dir / name

    def submit(self, spec: JobSpec) -> str:
        job_dir = self._dir(spec.name)
        if (job_dir / "job.json").exists():
            return spec.name
        job_dir.mkdir(parents=True, exist_ok=True)
        _write_json(job_dir / "job.json", self._job_record(spec))
        self._launch(job_dir)
        return spec.name

    def submit_array(self, name: str, specs: Sequence[JobSpec],
                     max_parallel: int | None = None) -> list[str]:
        """One supervisor runs all ``specs``, at most ``max_parallel`` at once (and never
        more than the backend's slots allow across all jobs)."""
        array_dir = self._dir(name)
        ids = [f"{name}{ARRAY_SEP}{i}" for i in range(len(specs))]
        if (array_dir / "array.json").exists():
            return ids
        for i, spec in enumerate(specs):
            task_dir = self._dir(ids[i])
            task_dir.mkdir(parents=True, exist_ok=True)
            _write_json(task_dir / "job.json", self._job_record(spec))
        _write_json(array_dir / "array.json", {"size": len(specs), "throttle": max_parallel,
                                               "submitted": time.time()})
        self._launch(array_dir)
        return ids

    def _job_record(self, spec: JobSpec) -> dict:
        return {
            "argv": spec.argv, "env": spec.env, "workdir": str(spec.workdir),
            "stdout_path": str(spec.stdout_path), "stderr_path": str(spec.stderr_path),
            "resources": spec.resources, "slots_dir": str(self.jobs_dir / ".slots"),
            "max_parallel": self.max_parallel, "submitted": time.time(),
        }

    @staticmethod
    def _launch(job_dir: Path) -> None:
        launcher = subprocess.Popen(  # noqa: S603 - fixed argv, the job dir is ours
            [sys.executable, "-m", "resources.backends.local_runner", str(job_dir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=True, cwd=str(job_dir), env=_runner_env(),
        )
        launcher.wait()

    def find(self, name: str) -> str | None:
        return name if (self._dir(name) / "job.json").exists() else None

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        return {job_id: self._status(job_id) for job_id in job_ids}

    def _status(self, job_id: str) -> JobStatus:
        job_dir = self._dir(job_id)
        if not (job_dir / "job.json").exists():
            return JobStatus(job_id, "unknown", reason="no such local job")
        result = _read(job_dir / "result.json")
        if result is not None:
            return _finished(job_id, result)
        runner = _read(job_dir / "runner.json")
        if runner is None:
            submitted = (_read(job_dir / "job.json") or {}).get("submitted", 0)
            if time.time() - submitted > 60:
                return JobStatus(job_id, "failed", reason="the job's supervisor never started")
            return JobStatus(job_id, "pending")
        if not _alive(runner["pid"]):
            result = _read(job_dir / "result.json")  # it may have finished meanwhile
            if result is not None:
                return _finished(job_id, result)
            return JobStatus(job_id, "failed", reason="the job's supervisor died (killed?)")
        started = _read(job_dir / "started.json")
        if started:
            return JobStatus(job_id, "running", node=_HOST)
        return JobStatus(job_id, "pending", reason="waiting for a free local slot")

    def cancel(self, job_id: str, grace_s: float = 5.0) -> None:
        """SIGTERM the job's process group, SIGKILL it if still there after ``grace_s``."""
        job_dir = self._dir(job_id)
        (job_dir / "cancel").touch()
        started = _read(job_dir / "started.json")
        if not started:
            return  # a job waiting for a slot sees the cancel file and never starts
        try:
            os.killpg(started["pgid"], signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if not _group_alive(started["pgid"]):
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(started["pgid"], signal.SIGKILL)

    def metrics(self, job_id: str) -> dict[str, float | None]:
        status = self._status(job_id)
        return {"processing_time_s": status.wall_time_s, "cpu_hours": status.cpu_hours,
                "peak_memory_gb": status.peak_memory_gb}

    def logs(self, job_id: str, tail_bytes: int = 20_000) -> str:
        job = _read(self._dir(job_id) / "job.json") or {}
        parts = []
        for key in ("stdout_path", "stderr_path"):
            path = Path(job.get(key, "/nonexistent"))
            if path.exists():
                with open(path, "rb") as handle:
                    handle.seek(max(0, path.stat().st_size - tail_bytes))
                    parts.append(handle.read().decode(errors="replace"))
        return "\n".join(parts)


def _finished(job_id: str, result: dict) -> JobStatus:
    exit_code = result.get("exit_code")
    start, end = result.get("start"), result.get("end")
    wall = (end - start) if start and end else None
    cpu_s = result.get("cpu_s")
    peak_kb = result.get("peak_rss_kb")
    metrics = {
        "exit_code": exit_code,
        "wall_time_s": wall,
        "cpu_hours": cpu_s / 3600 if cpu_s is not None else None,
        "peak_memory_gb": peak_kb / 1024**2 if peak_kb else None,
    }
    if result.get("cancelled"):
        return JobStatus(job_id, "cancelled", reason="cancelled", **metrics)
    if exit_code == 0:
        return JobStatus(job_id, "completed", **metrics)
    reason = result.get("reason") or (
        f"exit code {exit_code}" if exit_code is not None else "no exit code")
    return JobStatus(job_id, "failed", reason=reason, **metrics)


def _runner_env() -> dict[str, str]:
    """The supervisor needs to import this package; pass the interpreter's path along."""
    env = dict(os.environ)
    project_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [project_root, env.get("PYTHONPATH")]))
    return env
