"""The detached supervisor of a local job or job array
(``python -m resources.backends.local_runner DIR``).

It daemonizes (so it outlives the Dagster run worker that started it), waits for a free slot,
runs the job's argv with its environment, and writes the exit code, times, CPU time and peak
memory into the job directory, atomically. A re-attaching run only reads these files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


#: How often the supervisor first in line tries the slots, and how often the others look
#: whether they are first: a slot freed by a 0.2 s program must not idle for long.
FRONT_POLL_S, QUEUE_POLL_S = 0.01, 0.1
#: How often a task waiting behind another of its own supervisor looks for its cancel file.
#: It is woken at once when its turn comes, so this only bounds how late a cancellation is
#: noticed; fifty tasks of a batch waking ten times a second each cost the supervisor a
#: quarter of its CPU (0.31-0.37 s against 0.23-0.27 s for fifty 0.2 s programs, two slots).
CANCEL_POLL_S = 1.0


class SlotQueue:
    """First come, first served across supervisors for the backend's ``max_parallel`` slots.

    A slot is a lock file held with ``flock`` while a program runs: it dies with its holder,
    so a killed supervisor never leaks one. Polling the slots from every waiting thread made
    the order random: three batches submitted one after another shared the slots and all
    finished together, so the next run started only after all of them. Here a supervisor
    with waiting tasks holds a ticket in ``queue/`` (named by its submission time, locked
    while it lives, so a dead supervisor's ticket is recognized and removed) and only the
    supervisor with the oldest live ticket tries the slots, one of its threads at a time.
    """

    def __init__(self, slots_dir: Path, max_parallel: int, submitted: float):
        self.slots_dir, self.max_parallel = slots_dir, max_parallel
        self.queue_dir = slots_dir / "queue"
        self.name = f"{int(submitted * 1_000_000):020d}-{os.getpid()}"
        self._gate = threading.Lock()  # one waiting thread of this supervisor at a time
        self._count = threading.Lock()
        self._waiting = 0
        self._ticket: int | None = None

    def acquire(self, task_dir: Path) -> Any:
        """The held slot's file, or None when the task was cancelled while it waited."""
        self._join()
        try:
            while not (task_dir / "cancel").exists():
                if not self._gate.acquire(timeout=CANCEL_POLL_S):
                    continue
                try:
                    while not (task_dir / "cancel").exists():
                        if not self._first():
                            time.sleep(QUEUE_POLL_S)
                            continue
                        slot = self._try_slots()
                        if slot is not None:
                            return slot
                        time.sleep(FRONT_POLL_S)
                finally:
                    self._gate.release()
            return None
        finally:
            self._leave()

    def _join(self) -> None:
        with self._count:
            self._waiting += 1
            if self._ticket is None:
                self.queue_dir.mkdir(parents=True, exist_ok=True)
                # Created locked under a hidden name, then renamed: a ticket others can see
                # is always locked while its supervisor lives.
                hidden = self.queue_dir / f".{self.name}"
                fd = os.open(hidden, os.O_CREAT | os.O_WRONLY, 0o644)
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.replace(hidden, self.queue_dir / self.name)
                self._ticket = fd

    def _leave(self) -> None:
        with self._count:
            self._waiting -= 1
            if self._waiting == 0 and self._ticket is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.queue_dir / self.name)
                os.close(self._ticket)
                self._ticket = None

    def _first(self) -> bool:
        """No live ticket is older than ours; dead supervisors' tickets are removed."""
        for name in sorted(os.listdir(self.queue_dir)):
            if name >= self.name:
                return True
            if not name.startswith(".") and _alive(self.queue_dir / name):
                return False
        return True

    def _try_slots(self) -> Any:
        for i in range(self.max_parallel):
            handle = open(self.slots_dir / f"slot-{i}.lock", "w")  # noqa: SIM115 - held until exit
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except BlockingIOError:
                handle.close()
        return None


def _alive(ticket: Path) -> bool:
    """Whether the ticket's supervisor holds it; a dead one's ticket is removed."""
    try:
        fd = os.open(ticket, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        with contextlib.suppress(FileNotFoundError):
            # Only the file we locked: its owner may have left and queued again since.
            if os.stat(ticket).st_ino == os.fstat(fd).st_ino:
                os.unlink(ticket)
        return False
    finally:
        os.close(fd)


def supervise(job_dir: Path) -> int:
    """One job: its spec is ``job.json`` in ``job_dir``, its results go beside it."""
    job = json.loads((job_dir / "job.json").read_text())
    write_json(job_dir / "runner.json", {"pid": os.getpid()})
    run_task(job, job_dir, _queue(job, job.get("submitted")))
    return 0


def _queue(job: dict, submitted: float | None) -> SlotQueue:
    return SlotQueue(Path(job["slots_dir"]), int(job["max_parallel"]),
                     time.time() if submitted is None else float(submitted))


def supervise_array(array_dir: Path) -> int:
    """An array: ``tasks/<i>/job.json`` each, run by at most ``throttle`` threads (and, like
    every local job, only in a free slot), so one supervisor serves the whole batch."""
    array = json.loads((array_dir / "array.json").read_text())
    task_dirs = [array_dir / "tasks" / str(i) for i in range(int(array["size"]))]
    for task_dir in task_dirs:
        write_json(task_dir / "runner.json", {"pid": os.getpid()})
    workers = max(1, min(int(array.get("throttle") or len(task_dirs)), len(task_dirs)))
    queue = _queue(json.loads((task_dirs[0] / "job.json").read_text()), array.get("submitted"))

    def _run(task_dir: Path) -> None:
        try:
            run_task(json.loads((task_dir / "job.json").read_text()), task_dir, queue)
        except Exception as exc:  # one task's error is that task's result, not the array's
            write_json(task_dir / "result.json", {"exit_code": None, "end": time.time(),
                                                  "reason": f"runner error: {exc}"})

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_run, task_dirs))
    return 0


def run_task(job: dict, task_dir: Path, queue: SlotQueue) -> None:
    """Wait for a slot, run the argv with its environment, record exit code and usage."""
    slot = queue.acquire(task_dir)
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
