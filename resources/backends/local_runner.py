"""The detached supervisor of one local job (``python -m resources.backends.local_runner DIR``).

It daemonizes (so it outlives the Dagster run worker that started it), waits for a free slot,
runs the job's argv with its environment, and writes the exit code, times, CPU time and peak
memory into the job directory, atomically. A re-attaching run only reads these files.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import signal
import subprocess
import sys
import time
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
    job = json.loads((job_dir / "job.json").read_text())
    write_json(job_dir / "runner.json", {"pid": os.getpid()})
    slot = acquire_slot(Path(job["slots_dir"]), int(job["max_parallel"]), job_dir)
    if slot is None:
        write_json(job_dir / "result.json", {"exit_code": None, "cancelled": True,
                                             "start": None, "end": time.time()})
        return 0
    start = time.time()
    with open(job["stdout_path"], "ab") as out, open(job["stderr_path"], "ab") as err:
        try:
            child = subprocess.Popen(  # noqa: S603 - argv list from the job spec, no shell
                job["argv"], env=job["env"], cwd=job["workdir"], stdout=out, stderr=err,
                stdin=subprocess.DEVNULL, start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            err.write(f"cannot start {job['argv'][0]!r}: {exc}\n".encode())
            write_json(job_dir / "result.json", {
                "exit_code": 127, "start": start, "end": time.time(), "cpu_s": 0.0,
                "peak_rss_kb": 0, "reason": f"cannot start program: {exc.strerror or exc}",
            })
            return 0
        write_json(job_dir / "started.json", {"pid": child.pid, "pgid": child.pid,
                                              "start": start})
        exit_code = child.wait()
    end = time.time()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    write_json(job_dir / "result.json", {
        "exit_code": exit_code,
        "start": start,
        "end": end,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_kb": usage.ru_maxrss,
        "cancelled": (job_dir / "cancel").exists(),
    })
    return 0


def main() -> None:
    job_dir = Path(sys.argv[1])
    if os.fork() > 0:  # the submitter reaps this parent at once; the child is re-parented
        os._exit(0)
    os.setsid()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        supervise(job_dir)
    except Exception as exc:  # recorded for the status poller, never lost silently
        write_json(job_dir / "result.json", {"exit_code": None, "reason": f"runner error: {exc}",
                                             "end": time.time()})
    os._exit(0)


if __name__ == "__main__":
    main()
