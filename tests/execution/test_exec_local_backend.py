"""The local backend for real: a job outlives the process that submitted it, and cancels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from ccat_assets.execution.jobs import JobSpec, JobStatus
from resources.backends.local import LocalBackend

REPO = Path(__file__).resolve().parents[2]


def _spec(tmp_path: Path, name: str, argv: list[str]) -> JobSpec:
    job_dir = tmp_path / name
    job_dir.mkdir()
    return JobSpec(name=name, argv=argv, env={"PATH": "/usr/bin:/bin"}, workdir=job_dir,
                   stdout_path=job_dir / "stdout.log", stderr_path=job_dir / "stderr.log")


def _wait(backend: LocalBackend, job_id: str, done, timeout_s: float = 30) -> JobStatus:
    deadline = time.monotonic() + timeout_s
    while True:
        status = backend.status([job_id])[job_id]
        if done(status):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def test_job_survives_its_submitting_process(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    spec = _spec(tmp_path, "ccat-p-s-1", ["/bin/sh", "-c", "sleep 1.5; echo survived"])
    code = textwrap.dedent("""
        import json, os, sys
        from pathlib import Path
        from ccat_assets.execution.jobs import JobSpec
        from resources.backends.local import LocalBackend
        a = json.loads(sys.argv[1])
        spec = JobSpec(name=a["name"], argv=a["argv"], env=a["env"], workdir=Path(a["dir"]),
                       stdout_path=Path(a["out"]), stderr_path=Path(a["err"]))
        LocalBackend(Path(a["jobs"])).submit(spec)
        print(os.getpid(), flush=True)
        os._exit(0)  # the run worker dies without cleaning up
    """)
    args = {"name": spec.name, "argv": spec.argv, "env": spec.env, "dir": str(spec.workdir),
            "out": str(spec.stdout_path), "err": str(spec.stderr_path), "jobs": str(jobs)}
    submitter = subprocess.run(
        [sys.executable, "-c", code, json.dumps(args)], cwd=REPO, capture_output=True,
        text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    submitter_pid = int(submitter.stdout.split()[0])
    assert not Path(f"/proc/{submitter_pid}").exists()  # the submitter is gone
    backend = LocalBackend(jobs)  # a fresh object, as a retried run would build
    assert backend.find(spec.name) == spec.name
    assert backend.status([spec.name])[spec.name].state in ("pending", "running")
    final = _wait(backend, spec.name, lambda s: s.finished)
    assert final.state == "completed" and final.exit_code == 0
    assert final.wall_time_s is not None and final.wall_time_s >= 1.4
    assert spec.stdout_path.read_text() == "survived\n"


def test_cancel_stops_a_running_job(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "jobs")
    spec = _spec(tmp_path, "ccat-p-s-2", ["/bin/sh", "-c", "echo started; sleep 30"])
    job_id = backend.submit(spec)
    _wait(backend, job_id, lambda s: s.state == "running")
    started = time.monotonic()
    backend.cancel(job_id)
    final = _wait(backend, job_id, lambda s: s.finished, timeout_s=10)
    assert final.state == "cancelled"
    assert time.monotonic() - started < 5
    pid = json.loads((tmp_path / "jobs" / job_id / "started.json").read_text())["pid"]
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_submitting_the_same_name_twice_returns_the_first_job(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "jobs")
    spec = _spec(tmp_path, "ccat-p-s-3", ["/bin/echo", "once"])
    assert backend.submit(spec) == backend.submit(spec) == spec.name
    final = _wait(backend, spec.name, lambda s: s.finished)
    assert final.state == "completed" and spec.stdout_path.read_text() == "once\n"


def test_cancel_kills_a_job_that_ignores_sigterm(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "jobs")
    spec = _spec(tmp_path, "ccat-p-s-4",
                 ["/bin/sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"])
    job_id = backend.submit(spec)
    _wait(backend, job_id, lambda s: s.state == "running")
    deadline = time.monotonic() + 5
    while "ready" not in spec.stdout_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    backend.cancel(job_id, grace_s=0.5)
    final = _wait(backend, job_id, lambda s: s.finished, timeout_s=10)
    assert final.state == "cancelled" and 0.5 <= time.monotonic() - started < 5


def _started(jobs: Path, job_id: str) -> float:
    name, _, index = job_id.partition("#")
    return json.loads((jobs / name / "tasks" / index / "started.json").read_text())["start"]


def test_jobs_take_the_slots_in_the_order_they_were_submitted(tmp_path: Path) -> None:
    """Three arrays submitted one after another, one slot: the first array's tasks all start
    before any of the second's, and so on. Before the slot queue every waiting thread polled
    the slots, the arrays interleaved and all of them finished together, so the run of a
    fourth batch could only start after all three."""
    jobs = tmp_path / "jobs"
    backend = LocalBackend(jobs, max_parallel=1)
    arrays = []
    for a in range(3):
        specs = [_spec(tmp_path, f"ccat-p-fifo{a}-{i}", ["/bin/sh", "-c", "sleep 0.1"])
                 for i in range(4)]
        arrays.append(backend.submit_array(f"ccat-p-fifo{a}", specs))
    for ids in arrays:
        for job_id in ids:
            assert _wait(backend, job_id, lambda s: s.finished).state == "completed"
    starts = [[_started(jobs, job_id) for job_id in ids] for ids in arrays]
    for earlier, later in zip(starts, starts[1:], strict=False):
        assert max(earlier) < min(later), starts
    assert not [p for p in (jobs / ".slots" / "queue").iterdir()], "a ticket was left behind"


def test_a_dead_supervisors_ticket_does_not_hold_the_queue(tmp_path: Path) -> None:
    """A ticket no process holds (its supervisor was killed while it waited) is older than
    every new job; the next job removes it and runs."""
    jobs = tmp_path / "jobs"
    queue = jobs / ".slots" / "queue"
    queue.mkdir(parents=True)
    (queue / f"{1:020d}-999999").touch()
    backend = LocalBackend(jobs, max_parallel=1)
    spec = _spec(tmp_path, "ccat-p-s-5", ["/bin/echo", "ran"])
    final = _wait(backend, backend.submit(spec), lambda s: s.finished, timeout_s=10)
    assert final.state == "completed" and spec.stdout_path.read_text() == "ran\n"
    assert not list(queue.iterdir())
