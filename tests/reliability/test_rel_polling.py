"""Status polls that fail (the SSH connection or the API is down) do not abandon a running
job: ``execute``'s wait loop keeps polling with its backoff until the backend answers again,
for up to ``PollPolicy.error_grace_s``; errors no retry can cure are raised at once. The
backend here is a stand-in that fails on request; the real outage is in
``test_rel_slurm_faults.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccat_assets.execution.execute import ExecutionServices, PollPolicy, _wait
from ccat_assets.execution.jobs import JobStatus


class FlakyBackend:
    name = "flaky"

    def __init__(self, failures: int, error: Exception):
        self.failures, self.error, self.calls = failures, error, 0

    def status(self, job_ids):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return {job_id: JobStatus(job_id, "completed", exit_code=0) for job_id in job_ids}


def _services(backend: FlakyBackend, slept: list[float], log: list[str]) -> ExecutionServices:
    return ExecutionServices(
        sessions=None, backend=backend, runtime=None, stager_factory=None,  # type: ignore[arg-type]
        base_dir=Path("/nonexistent"), log=log.append, sleep=slept.append,
        poll=PollPolicy(min_s=1, max_s=10, factor=2, error_grace_s=60))


def test_polls_through_an_outage() -> None:
    slept: list[float] = []
    log: list[str] = []
    backend = FlakyBackend(failures=5, error=ConnectionResetError("connection reset"))
    status = _wait(_services(backend, slept, log), run_id=1, job_id="7")
    assert status.state == "completed" and backend.calls == 6
    assert slept == [1, 2, 4, 8, 10]  # the usual backoff, capped
    assert len(log) == 5 and "polling job 7 failed (connection reset)" in log[0]


def test_gives_up_after_the_grace_period() -> None:
    slept: list[float] = []
    backend = FlakyBackend(failures=10**6, error=OSError("connection refused"))
    with pytest.raises(OSError, match="refused"):
        _wait(_services(backend, slept, []), run_id=1, job_id="7")
    assert 60 <= sum(slept) < 60 + 10


def test_a_bad_job_id_is_raised_at_once() -> None:
    slept: list[float] = []
    backend = FlakyBackend(failures=1, error=ValueError("invalid job id"))
    with pytest.raises(ValueError, match="invalid job id"):
        _wait(_services(backend, slept, []), run_id=1, job_id="7")
    assert slept == [] and backend.calls == 1
