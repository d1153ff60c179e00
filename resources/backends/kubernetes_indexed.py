"""The members of an Indexed Job (a batch on Kubernetes): ids, states, cancellations. Pure.

Member ``i`` of the Job ``J`` has the id ``J#i``. Kubernetes reports finished indexes on the
Job (``status.completedIndexes``, ``status.failedIndexes``, as ``"0-2,5"``); the pods, each
labelled with its index, say whether a member is running and how it ended. Kubernetes cannot
cancel one index, so cancelling a member deletes its pod and lists the index in an
annotation, which this module reads as "cancelled".
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ccat_assets.execution.jobs import JobStatus
from resources.backends.kubernetes_manifest import (
    ANNOTATION_CANCELLED,
    CONTAINER,
    INDEX_LABEL,
)

MEMBER_SEP = "#"
ANNOTATION_CANCELLED_INDEXES = "ccat-workflow-manager/cancelled-indexes"
STUCK_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                           "CreateContainerConfigError", "CreateContainerError"})


def parse_indexes(text: str | None) -> set[str]:
    """``"0-2,5"`` -> ``{"0", "1", "2", "5"}``."""
    out: set[str] = set()
    for part in (text or "").split(","):
        first, sep, last = part.strip().partition("-")
        if first.isdigit() and (not sep or last.isdigit()):
            out.update(str(i) for i in range(int(first), int(last if sep else first) + 1))
    return out


def cancelled_indexes(job: Any) -> set[str]:
    annotations = job.metadata.annotations or {}
    return parse_indexes(annotations.get(ANNOTATION_CANCELLED_INDEXES))


def pod_index(pod: Any) -> str:
    return (pod.metadata.labels or {}).get(INDEX_LABEL, "")


def _seconds(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


def _container_state(pods: list[Any]) -> tuple[Any, Any, str | None]:
    """The newest pod's terminated and waiting states of the step container, and its phase."""
    terminated = waiting = phase = None
    for pod in sorted(pods, key=lambda p: p.metadata.creation_timestamp or dt.datetime.min):
        phase = pod.status.phase if pod.status else None
        for cs in (pod.status.container_statuses or []) if pod.status else []:
            if cs.name == CONTAINER and cs.state is not None:
                terminated = cs.state.terminated or terminated
                waiting = cs.state.waiting or waiting
    return terminated, waiting, phase


def pod_node(pods: list[Any]) -> str | None:
    """The node the newest of ``pods`` was scheduled on, if it was."""
    for pod in reversed(pods):
        node = getattr(getattr(pod, "spec", None), "node_name", None)
        if node:
            return str(node)
    return None


def member_status(member: str, job: Any, pods: list[Any]) -> JobStatus:
    """The state of member ``J#i`` from its Job and the pods of its index."""
    if job is None:
        return JobStatus(member, "unknown", reason=f"no Job {member.split(MEMBER_SEP)[0]}")
    index = member.rpartition(MEMBER_SEP)[2]
    status = job.status
    terminated, waiting, phase = _container_state(pods)
    metrics: dict[str, Any] = {}
    if terminated is not None:
        metrics = {"exit_code": terminated.exit_code,
                   "wall_time_s": _seconds(terminated.started_at, terminated.finished_at)}
    annotations = job.metadata.annotations or {}
    if index in cancelled_indexes(job) or annotations.get(ANNOTATION_CANCELLED) == "true":
        return JobStatus(member, "cancelled", reason="cancelled", **metrics)
    if index in parse_indexes(status.completed_indexes if status else None):
        return JobStatus(member, "completed", **metrics)
    failed = index in parse_indexes(getattr(status, "failed_indexes", None) if status else None)
    conditions = {c.type: c for c in (status.conditions or []) if c.status == "True"} \
        if status else {}
    if failed or "Failed" in conditions:
        return JobStatus(member, "failed", reason=_failure(terminated, conditions), **metrics)
    if waiting is not None and waiting.reason in STUCK_REASONS:
        return JobStatus(member, "pending", reason=f"{waiting.reason}: {waiting.message}")
    if phase == "Running" or (terminated is not None):  # ended; the Job not yet updated
        return JobStatus(member, "running", node=pod_node(pods))
    return JobStatus(member, "pending", reason=waiting.reason if waiting else None)


def _failure(terminated: Any, conditions: dict[str, Any]) -> str:
    if terminated is not None and terminated.reason == "OOMKilled":
        return "the job ran out of memory (resources.memory_gb)"
    failed = conditions.get("Failed")
    if failed is not None and failed.reason == "DeadlineExceeded":
        return "the job hit its time limit (resources.time_hours)"
    if terminated is not None and terminated.exit_code:
        return f"exit code {terminated.exit_code}"
    if failed is not None:
        return f"{failed.reason or 'failed'}: {failed.message or ''}".strip(": ")
    return "the member's pod failed"
