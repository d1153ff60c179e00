"""The detached supervisor of a local job or job array
(``python -m resources.backends.local_runner DIR``).

It daemonizes (so it outlives the Dagster run worker that started it), waits for a free slot,
runs the job's argv with its environment, and writes the exit code, times, CPU time and peak
memory into the job directory, atomically. A re-attaching run only reads these files.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def acquire_slot(slots_dir: Path, max_parallel: int, job_dir: Path):
    """Block until one of ``max_parallel`` lock files is ours; the lock dies with us."""
    slots_dir.mkdir(parents=True, exist_ok=True)
    while True:
        if (job_dir / "cancel").exists():
            return None
        for i in range(max_parallel):
            handle = open(slots_dir / f"slot-{i}.lock", "w")  # noqa: SIM115 - held until exit
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except BlockingIOError:
                handle.close()
        time.sleep(0.2)


def supervise(job_dir: Path) -> int:
    """One job: its spec is ``job.json`` in ``job_dir``, its results go beside it."""
    job = json.loads((job_dir / "job.json").read_text())
    write_json(job_dir / "runner.json", {"pid": os.getpid()})
    run_task(job, job_dir)
    return 0


def supervise_array(array_dir: Path) -> int:
    """An array: ``tasks/<i>/job.json`` each, run by at most ``throttle`` threads (and, like
    every local job, only in a free slot), so one supervisor serves the whole batch."""
    array = json.loads((array_dir / "array.json").read_text())
    task_dirs = [array_dir / "tasks" / str(i) for i in range(int(array["size"]))]
    for task_dir in task_dirs:
        write_json(task_dir / "runner.json", {"pid": os.getpid()})
    workers = max(1, min(int(array.get("throttle") or len(task_dirs)), len(task_dirs)))

    def _run(task_dir: Path) -> None:
        try:
            run_task(json.loads((task_dir / "job.json").read_text()), task_dir)
        except Exception as exc:  # one task's error is that task's result, not the array's
            write_json(task_dir / "result.json", {"exit_code": None, "end": time.time(),
                                                  "reason": f"runner error: {exc}"})

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_run, task_dirs))
    return 0


def run_task(job: dict, task_dir: Path) -> None:
    """Wait for a slot, run the argv with its environment, record exit code and usage."""
    slot = acquire_slot(Path(job["slots_dir"]), int(job["max_parallel"]), task_dir)
    if slot is None:
        write_json(task_dir / "result.json", {"exit_code": None, "cancelled": True,
                                              "start": None, "end": time.time()})
        return
    try:
        _run_child(job, task_dir)
    finally:
        slot.close()


def _run_child(job: dict, task_dir: Path) -> None:
    start = time.time()
    with open(job["stdout_path"], "ab") as out, open(job["stderr_path"], "ab") as err:
        try:
            child = subprocess.Popen(  # noqa: S603 - argv list from the job spec, no shell
                job["argv"], env=job["env"], cwd=job["workdir"], stdout=out, stderr=err,
                stdin=subprocess.DEVNULL, start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            err.write(f"cannot start {job['argv'][0]!r}: {exc}\n".encode())
            write_json(task_dir / "result.json", {
                "exit_code": 127, "start": start, "end": time.time(), "cpu_s": 0.0,
                "peak_rss_kb": 0, "reason": f"cannot start program: {exc.strerror or exc}",
            })
            return
        write_json(task_dir / "started.json", {"pid": child.pid, "pgid": child.pid,
                                               "start": start})
        # wait4: this child's own usage, even with sibling tasks running in other threads
        _, wait_status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(wait_status)
    write_json(task_dir / "result.json", {
        "exit_code": child.returncode,
        "start": start,
        "end": time.time(),
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_kb": usage.ru_maxrss,
        "cancelled": (task_dir / "cancel").exists(),
    })


def main() -> None:
    job_dir = Path(sys.argv[1])
    if os.fork() > 0:  # the submitter reaps this parent at once; the child is re-parented
        os._exit(0)
    os.setsid()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        if (job_dir / "array.json").exists():
            supervise_array(job_dir)
        else:
            supervise(job_dir)
    except Exception as exc:  # recorded for the status poller, never lost silently
        write_json(job_dir / "result.json", {"exit_code": None, "reason": f"runner error: {exc}",
                                             "end": time.time()})
    os._exit(0)


if __name__ == "__main__":
    main()
