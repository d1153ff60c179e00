"""The execution-backend interface the run orchestration talks to.

Backends (local process, SLURM over SSH, Kubernetes Jobs) live in ``resources/backends`` and
implement :class:`Backend`; the domain only sees this protocol. Commands are argv lists, never
shell strings built from user data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

JobState = Literal["pending", "running", "completed", "failed", "cancelled", "unknown"]
FINISHED_STATES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class JobSpec:
    """One job: a deterministic name (so a lost submission can be found again), an argv,
    its environment, its working directory and where its stdout/stderr go."""

    name: str
    argv: list[str]
    env: dict[str, str]
    workdir: Path
    stdout_path: Path
    stderr_path: Path
    resources: dict[str, Any] = field(default_factory=dict)
    image: str | None = None  # the step's image, for backends that run images (kubernetes)


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: JobState
    exit_code: int | None = None
    wall_time_s: float | None = None
    cpu_hours: float | None = None
    peak_memory_gb: float | None = None
    reason: str | None = None
    #: Where it runs (SLURM's node list, this host for ``local``), when the backend says.
    node: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES


class Backend(Protocol):
    name: str

    def submit(self, spec: JobSpec) -> str:
        """Start the job and return its id. Submitting a name that exists returns its id."""

    def find(self, name: str) -> str | None:
        """The id of a job submitted under ``name``, if the backend knows one."""

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """The status of many jobs in one call."""

    def cancel(self, job_id: str) -> None: ...

    def logs(self, job_id: str) -> str: ...


class ArrayBackend(Backend, Protocol):
    """A backend that runs many jobs of one step as one array job."""

    def submit_array(self, name: str, specs: Sequence[JobSpec],
                     max_parallel: int | None = None) -> list[str]:
        """Start ``specs`` as one array job named ``name``, at most ``max_parallel`` at
        once; return each member's job id, in order. Submitting a name that exists returns
        the ids of that array: a lost answer never starts a second array."""


def submit_array(backend: Backend, name: str, specs: Sequence[JobSpec],
                 max_parallel: int | None = None) -> list[str]:
    """One array job where the backend has them, else one job per spec."""
    if not specs:
        return []
    native = getattr(backend, "submit_array", None)
    if native is not None:
        return list(native(name, specs, max_parallel))
    return [backend.submit(spec) for spec in specs]


class ContainerRuntime(Protocol):
    name: str
    in_container: bool

    def command(
        self, *, argv: list[str], env: dict[str, str], binds: list[tuple[Path, Any, bool]],
        image: str, gpu: int, workdir: Path,
    ) -> tuple[list[str], dict[str, str]]:
        """The argv and process environment that run ``argv`` under this runtime."""
