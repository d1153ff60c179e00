"""What a run's log says while its jobs are polled: state changes and the programs' output.

Why: without it a job that waits an hour in the queue looks hung, and a failed one says
"exit code 1" and nothing more. The wait loop (:func:`ccat_assets.execution.execute.wait_jobs`)
hands every poll's statuses to a :class:`JobWatch`, which writes to the run's log

* a line when a job's state, reason or node changes (pending with the scheduler's reason,
  running on which node), never the same one twice;
* for a batch, the members' progress (k of N done) when it changes;
* the lines each job's program wrote to stdout/stderr since the last poll, under a
  ``<run> <stream>:`` header, bounded per job and per poll
  (:class:`~ccat_assets.execution.output_tail.TailBounds`) with a marker for what was left out.

A poll with nothing new costs one ``stat`` per output file and no log line; a busy one a
bounded number of messages (each message is a write to Dagster's event log, the dominant
cost, so lines are packed into few messages).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ccat_assets.execution.jobs import FINISHED_STATES, JobStatus
from ccat_assets.execution.output_tail import FileTail, TailBounds

Log = Callable[[str], None]
STREAMS = ("stdout", "stderr")


@dataclass(frozen=True)
class JobOutput:
    """Where a job's program writes (the run's ``logs/stdout.log`` and ``logs/stderr.log``)."""

    stdout: Path
    stderr: Path


def _state_line(label: str, job_id: str, status: JobStatus) -> str:
    text = f"{label}: job {job_id} {status.state}"
    if status.state == "running" and status.node:
        text += f" on {status.node}"
    return text + (f" ({status.reason})" if status.reason else "")


class JobWatch:
    """The observer of one wait loop: ``jobs`` maps a job id to the run label shown in the
    log (``run 12``), ``outputs`` a job id to its output files (jobs without are not
    tailed)."""

    def __init__(self, log: Log, jobs: Mapping[str, str],
                 outputs: Mapping[str, JobOutput] | None = None,
                 bounds: TailBounds | None = None):
        self.log = log
        self.labels = dict(jobs)
        self.bounds = bounds or TailBounds()
        self._tails = {job_id: {s: FileTail(getattr(out, s)) for s in STREAMS}
                       for job_id, out in (outputs or {}).items()}
        self._seen: dict[str, tuple[str, str | None, str | None]] = {}
        self._progress: tuple[int, int, int] | None = None
        self._done: set[str] = set()
        self._next: str | None = None

    def observe(self, statuses: Mapping[str, JobStatus]) -> None:
        """One poll: the state changes, new output of the jobs polled, and the progress.

        Each message is an event in the run's log, and an event costs a write, so a poll's
        lines are packed: its state changes into one message, its output into messages of
        at most ``bounds.message_lines`` lines, at most ``bounds.max_messages`` of them. Jobs
        left over are read first at the next poll, from their offsets, so nothing is lost
        but a flood's excess; a job that ended is always read to its end.
        """
        live = [job_id for job_id in statuses if job_id not in self._done]
        if self._next in live:  # start where the last poll's budget ran out
            at = live.index(self._next)
            live = live[at:] + live[:at]
        self._next = None
        self._emit([line for job_id in live
                    if (line := self._state(job_id, statuses[job_id])) is not None])
        budget = self.bounds.message_lines * self.bounds.max_messages
        sections: list[str] = []
        for job_id in live:
            status = statuses[job_id]
            ended = status.finished or status.state == "unknown"
            if ended:
                sections += self.sections(job_id, final=True)
                self._done.add(job_id)
            elif budget > 0:
                new = self.sections(job_id)
                budget -= sum(x.count("\n") + 1 for x in new)
                sections += new
            elif self._next is None:
                self._next = job_id
        self._emit(sections, self.bounds.max_messages)
        if len(self.labels) > 1:
            self._report_progress(statuses)

    def _emit(self, parts: list[str], max_messages: int | None = None) -> None:
        """Log ``parts`` packed into messages of at most ``bounds.message_lines`` lines (a
        part longer than that is a message of its own); with ``max_messages``, the last
        message takes whatever is left (a few sections past the line budget at most)."""
        message: list[str] = []
        size, sent = 0, 0
        for part in parts:
            lines = part.count("\n") + 1
            last = max_messages is not None and sent >= max_messages - 1
            if message and size + lines > self.bounds.message_lines and not last:
                self.log("\n".join(message))
                message, size, sent = [], 0, sent + 1
            message.append(part)
            size += lines
        if message:
            self.log("\n".join(message))

    def _state(self, job_id: str, status: JobStatus) -> str | None:
        """A line when what a person would want to know changed; finished states are the
        run's own lines (collection, failure), not repeated here."""
        key = (status.state, status.reason, status.node)
        if self._seen.get(job_id) == key or status.state in FINISHED_STATES:
            self._seen[job_id] = key
            return None
        self._seen[job_id] = key
        return _state_line(self.labels.get(job_id, "job"), job_id, status)

    def sections(self, job_id: str, *, final: bool = False) -> list[str]:
        """What the job's program wrote since the last look: a ``<label> <stream>:`` header
        and the lines, per stream with new lines."""
        out = []
        for stream, tail in self._tails.get(job_id, {}).items():
            chunk = tail.read_new(self.bounds, final=final)
            if chunk is not None:
                out.append(f"{self.labels.get(job_id, 'job')} {stream}:\n{chunk.text()}")
        return out

    def _report_progress(self, statuses: Mapping[str, JobStatus]) -> None:
        running = sum(1 for s in statuses.values() if s.state == "running")
        pending = sum(1 for s in statuses.values() if s.state == "pending")
        done = len(self._done)
        progress = (done, running, pending)
        if progress == self._progress:
            return
        self._progress = progress
        self.log(f"batch: {done} of {len(self.labels)} jobs done, {running} running, "
                 f"{pending} pending")
