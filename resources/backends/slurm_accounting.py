"""Reading SLURM's answers: ``squeue``/``sacct`` output -> :class:`JobStatus`. Pure functions.

``squeue`` is the truth for live jobs (the accounting daemon may lag behind the controller);
``sacct`` is the truth for finished ones and the only source of metrics: Elapsed, TotalCPU
and the largest MaxRSS of the job's steps (the batch step's, for a batch job).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ccat_assets.execution.jobs import JobState, JobStatus

#: The fields asked of ``sacct`` (``-P --noconvert``: ``|``-separated, MaxRSS in bytes).
SACCT_FIELDS = ("JobIDRaw", "JobID", "JobName", "State", "ExitCode", "ElapsedRaw", "TotalCPU",
                "MaxRSS", "Reason")
#: The ``squeue --format``: id, name, long state, reason, node list (empty while pending).
SQUEUE_FORMAT = "%i|%j|%T|%r|%N"

#: SLURM job state -> (our state, reason shown when the job did not succeed).
STATE_MAP: dict[str, tuple[JobState, str | None]] = {
    "PENDING": ("pending", None),
    "REQUEUED": ("pending", None),
    "REQUEUE_FED": ("pending", None),
    "REQUEUE_HOLD": ("pending", "held after requeue"),
    "CONFIGURING": ("pending", None),
    "RESIZING": ("running", None),
    "RUNNING": ("running", None),
    "COMPLETING": ("running", None),
    "STAGE_OUT": ("running", None),
    "SIGNALING": ("running", None),
    "SUSPENDED": ("running", "suspended by the scheduler"),
    "STOPPED": ("running", "stopped by the scheduler"),
    "COMPLETED": ("completed", None),
    "FAILED": ("failed", "the program failed"),
    "CANCELLED": ("cancelled", "cancelled"),
    "TIMEOUT": ("failed", "the job hit its time limit (resources.time_hours)"),
    "OUT_OF_MEMORY": ("failed", "the job ran out of memory (resources.memory_gb)"),
    "NODE_FAIL": ("failed", "the node running the job failed"),
    "PREEMPTED": ("failed", "the job was preempted"),
    "BOOT_FAIL": ("failed", "the node failed to boot"),
    "DEADLINE": ("failed", "the job missed its deadline"),
    "REVOKED": ("failed", "the job was revoked (federation)"),
    "SPECIAL_EXIT": ("failed", "the job ended in SPECIAL_EXIT"),
}

_BYTES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
_DURATION = re.compile(r"(?:(?P<d>\d+)-)?(?:(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d+(?:\.\d+)?)")


def parse_bytes(text: str) -> int | None:
    """``115376128``, ``112672K`` or ``1.5G`` -> bytes; None when empty."""
    text = text.strip()
    if not text:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGTP]?)", text)
    if not match:
        return None
    return int(float(match.group(1)) * _BYTES[match.group(2)])


def parse_duration(text: str) -> float | None:
    """``[D-][HH:]MM:SS[.mmm]`` (sacct's TotalCPU/Elapsed) -> seconds."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        return None
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


def base_state(raw: str) -> str:
    """``CANCELLED by 0`` -> ``CANCELLED``; ``RUNNING`` stays."""
    return raw.split()[0].rstrip("+") if raw.strip() else ""


def parse_exit(text: str) -> tuple[int | None, int]:
    """sacct's ``code:signal``."""
    code, _, signal = text.partition(":")
    try:
        return int(code), int(signal or 0)
    except ValueError:
        return None, 0


@dataclass
class SacctJob:
    """One job's sacct lines folded together: the job line and its steps."""

    job_id: str
    name: str = ""
    state: str = ""
    state_text: str = ""
    exit_code: int | None = None
    signal: int = 0
    elapsed_s: float | None = None
    total_cpu_s: float | None = None
    max_rss: dict[str, int] = field(default_factory=dict)
    reason: str = ""


def parse_sacct(text: str) -> dict[str, SacctJob]:
    """``sacct -P -n --noconvert --format=<SACCT_FIELDS>`` -> jobs by id."""
    jobs: dict[str, SacctJob] = {}
    for line in text.splitlines():
        cols = line.split("|")
        if len(cols) < len(SACCT_FIELDS):
            continue
        row = dict(zip(SACCT_FIELDS, cols, strict=False))
        job_id, _, step = row["JobID"].partition(".")
        if not re.fullmatch(r"\d+(_\d+)?", job_id):
            continue
        job = jobs.setdefault(job_id, SacctJob(job_id))
        rss = parse_bytes(row["MaxRSS"])
        if step:
            if rss is not None:
                job.max_rss[step] = rss
            continue
        job.name, job.state_text = row["JobName"], row["State"]
        job.state = base_state(row["State"])
        job.exit_code, job.signal = parse_exit(row["ExitCode"])
        job.elapsed_s = float(row["ElapsedRaw"]) if row["ElapsedRaw"].isdigit() else None
        job.total_cpu_s = parse_duration(row["TotalCPU"])
        job.reason = "" if row["Reason"] in ("", "None") else row["Reason"]
        if rss is not None:
            job.max_rss["job"] = rss
    return jobs


@dataclass(frozen=True)
class SqueueJob:
    job_id: str
    name: str
    state: str
    reason: str
    nodes: str = ""


def parse_squeue(text: str) -> dict[str, SqueueJob]:
    """``squeue --noheader --format=SQUEUE_FORMAT`` -> jobs by id (errors ignored); the node
    list column may be absent (an older format)."""
    jobs = {}
    for line in text.splitlines():
        cols = line.split("|")
        if len(cols) not in (4, 5) or not re.fullmatch(r"\d+(_\d+)?", cols[0]):
            continue
        nodes = cols[4].strip() if len(cols) == 5 else ""
        jobs[cols[0]] = SqueueJob(cols[0], cols[1], cols[2].strip(),
                                  "" if cols[3] in ("None", "(null)") else cols[3],
                                  "" if nodes in ("(null)", "n/a") else nodes)
    return jobs


def _mapped(job_id: str, slurm_state: str) -> tuple[JobState, str | None]:
    if slurm_state not in STATE_MAP:
        return "unknown", f"unrecognised SLURM state {slurm_state!r}"
    return STATE_MAP[slurm_state]


def status_from_squeue(job: SqueueJob) -> JobStatus:
    state, reason = _mapped(job.job_id, job.state)
    if state in ("pending", "running") and job.reason:
        reason = f"{reason}; {job.reason}" if reason else job.reason
    return JobStatus(job.job_id, state, reason=reason if state != "completed" else None,
                     node=(job.nodes or None) if state == "running" else None)


def status_from_sacct(job: SacctJob) -> JobStatus:
    """A JobStatus with metrics: wall time, CPU hours, peak memory of the largest step."""
    state, reason = _mapped(job.job_id, job.state)
    exit_code = job.exit_code
    if job.signal:
        exit_code = 128 + job.signal
    if state == "completed" and exit_code not in (0, None):
        state, reason = "failed", None
    if state == "failed" and job.state == "FAILED":
        reason = (f"exit code {job.exit_code}" if not job.signal
                  else f"killed by signal {job.signal}")
    if state == "cancelled":
        reason = job.state_text.lower() if job.state_text else "cancelled"
    peak = max(job.max_rss.values()) if job.max_rss else None
    return JobStatus(
        job.job_id, state, exit_code=exit_code,
        wall_time_s=job.elapsed_s,
        cpu_hours=job.total_cpu_s / 3600 if job.total_cpu_s is not None else None,
        peak_memory_gb=peak / 1024**3 if peak is not None else None,
        reason=reason if state != "completed" else None,
    )
