"""The ``kubernetes`` backend: one batch/v1 Job per job spec (the ``kubernetes`` client).

Why it looks like this: the Job's name is derived from the deterministic job name, so
creating it twice answers 409 and ``submit`` returns the existing one, and ``find`` is a read
by name. A poll is two API calls whatever the number of jobs (Jobs and their Pods, selected
by label). Cancelling suspends the Job (Kubernetes then deletes its pods) and marks it, so
its status and logs stay readable. Wall time and exit code come from the pod's container
state; CPU time and peak memory are not measured by Kubernetes itself, so they stay None.
When a job ends, its pod log is written to the spec's stdout file, which the orchestrator
shares with the pods (the workspace volume), so log collection works as on the other
backends. A batch is one Indexed Job (:mod:`resources.backends.kubernetes_indexed`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from ccat_assets.execution.jobs import JobSpec, JobStatus
from resources.backends.kubernetes_indexed import (
    ANNOTATION_CANCELLED_INDEXES,
    MEMBER_SEP,
    STUCK_REASONS,
    cancelled_indexes,
    member_status,
    pod_node,
)
from resources.backends.kubernetes_indexed import pod_index as _index
from resources.backends.kubernetes_manifest import (
    ANNOTATION_CANCELLED,
    ANNOTATION_NAME,
    ANNOTATION_STDOUT,
    CONTAINER,
    INDEX_LABEL,
    LABEL_JOB,
    K8sJobConfig,
    build_indexed_job,
    build_job,
    k8s_name,
    task_script_path,
)
from resources.backends.slurm_script import render_task_script

log = logging.getLogger("ccat.backends.kubernetes")



def _seconds(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


def _created(pod: Any) -> float:
    stamp = pod.metadata.creation_timestamp
    return stamp.timestamp() if stamp else 0.0


class KubernetesBackend:
    name = "kubernetes"

    def __init__(self, job_config: K8sJobConfig, *, batch_api: Any = None, core_api: Any = None,
                 kubeconfig: str | None = None, context: str | None = None):
        self.config = job_config
        self._batch, self._core = batch_api, core_api
        self._kubeconfig, self._context = kubeconfig, context

    @classmethod
    def from_settings(cls, settings: Any) -> KubernetesBackend:
        mount = getattr(settings, "k8s_workspace_mount_path", None) or settings.pipelines_dir
        job_config = K8sJobConfig(
            namespace=settings.k8s_namespace, image=settings.k8s_image,
            workspace_mount_path=str(mount),
            workspace_pvc=getattr(settings, "k8s_workspace_pvc", None) or None,
            workspace_host_path=getattr(settings, "k8s_workspace_host_path", None) or None,
            service_account=getattr(settings, "k8s_service_account", None) or None,
            image_pull_secret=getattr(settings, "k8s_image_pull_secret", None) or None,
        )
        kubeconfig = getattr(settings, "k8s_kubeconfig", None)
        return cls(job_config, kubeconfig=str(kubeconfig) if kubeconfig else None,
                   context=getattr(settings, "k8s_context", None) or None)

    # -- API clients, created on first use (so building the backend needs no cluster) -------
    def _apis(self) -> tuple[Any, Any]:
        if self._batch is None or self._core is None:
            if self._kubeconfig:
                config.load_kube_config(config_file=self._kubeconfig, context=self._context)
            else:
                try:
                    config.load_incluster_config()
                except config.ConfigException:
                    config.load_kube_config(context=self._context)
            self._batch, self._core = client.BatchV1Api(), client.CoreV1Api()
        return self._batch, self._core

    @property
    def namespace(self) -> str:
        return self.config.namespace

    # -- submission -------------------------------------------------------------------------
    def submit(self, spec: JobSpec) -> str:
        batch, _core = self._apis()
        job = build_job(spec, self.config, image=getattr(spec, "image", None))
        try:
            batch.create_namespaced_job(self.namespace, job)
        except ApiException as exc:
            if exc.status != 409:
                raise
            log.info("Job %s exists already; re-attaching", job.metadata.name)
        return job.metadata.name

    def submit_array(self, name: str, specs: Sequence[JobSpec],
                     max_parallel: int | None = None) -> list[str]:
        """One Indexed Job; member ``i`` is ``<job>#<i>``. Each member's script is written to
        the shared workspace first (quoted like the SLURM script), then the Job is created;
        creating it again finds it (409) and re-attaches."""
        if not specs:
            return []
        batch, _core = self._apis()
        for index, spec in enumerate(specs):
            script = Path(task_script_path(name, specs[0], index))
            script.parent.mkdir(parents=True, exist_ok=True)
            script.write_text(render_task_script(spec, drop_env=self.config.drop_env))
        job = build_indexed_job(name, list(specs), self.config, max_parallel)
        try:
            batch.create_namespaced_job(self.namespace, job)
        except ApiException as exc:
            if exc.status != 409:
                raise
            log.info("Indexed Job %s exists already; re-attaching", job.metadata.name)
        return [f"{job.metadata.name}{MEMBER_SEP}{i}" for i in range(len(specs))]

    def find(self, name: str) -> str | None:
        batch, _core = self._apis()
        try:
            job = batch.read_namespaced_job(k8s_name(name), self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        annotations = job.metadata.annotations or {}
        return job.metadata.name if annotations.get(ANNOTATION_NAME) == name else None

    # -- status -----------------------------------------------------------------------------
    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """One list of Jobs and one of pods for all ``job_ids``, members of Indexed Jobs too."""
        wanted = list(dict.fromkeys(job_ids))
        if not wanted:
            return {}
        members = [i for i in wanted if MEMBER_SEP in i]
        ids = list(dict.fromkeys([i for i in wanted if MEMBER_SEP not in i]
                                 + [i.split(MEMBER_SEP)[0] for i in members]))
        batch, core = self._apis()
        selector = f"{LABEL_JOB} in ({','.join(ids)})"
        jobs = {j.metadata.name: j for j in
                batch.list_namespaced_job(self.namespace, label_selector=selector).items}
        pods: dict[str, list[Any]] = {}
        for pod in core.list_namespaced_pod(self.namespace, label_selector=selector).items:
            pods.setdefault((pod.metadata.labels or {}).get(LABEL_JOB, ""), []).append(pod)
        out = {}
        for member in members:
            job_name, _, index = member.partition(MEMBER_SEP)
            out[member] = member_status(member, jobs.get(job_name), [
                p for p in pods.get(job_name, []) if _index(p) == index])
        for job_id in (i for i in wanted if MEMBER_SEP not in i):
            job = jobs.get(job_id)
            if job is None:
                out[job_id] = JobStatus(job_id, "unknown", reason=f"no Job {job_id} in "
                                        f"namespace {self.namespace}")
                continue
            out[job_id] = self._status(job, pods.get(job_id, []))
            if out[job_id].finished:
                self._save_log(job, pods.get(job_id, []))
        return out

    def _status(self, job: Any, pods: list[Any]) -> JobStatus:
        job_id = job.metadata.name
        annotations = job.metadata.annotations or {}
        terminated, waiting, phase = None, None, None
        for pod in sorted(pods, key=_created):
            phase = pod.status.phase if pod.status else None
            for cs in (pod.status.container_statuses or []) if pod.status else []:
                if cs.name == CONTAINER and cs.state is not None:
                    terminated = cs.state.terminated or terminated
                    waiting = cs.state.waiting or waiting
        metrics: dict[str, Any] = {}
        if terminated is not None:
            metrics = {"exit_code": terminated.exit_code,
                       "wall_time_s": _seconds(terminated.started_at, terminated.finished_at)}
        if annotations.get(ANNOTATION_CANCELLED) == "true":
            return JobStatus(job_id, "cancelled", reason="cancelled", **metrics)
        conditions = {c.type: c for c in (job.status.conditions or [])
                      if c.status == "True"} if job.status else {}
        if "Complete" in conditions:
            return JobStatus(job_id, "completed", **metrics)
        if "Failed" in conditions:
            return JobStatus(job_id, "failed",
                             reason=self._failure(conditions["Failed"], terminated), **metrics)
        if waiting is not None and waiting.reason in STUCK_REASONS:
            return JobStatus(job_id, "pending", reason=f"{waiting.reason}: {waiting.message}")
        if phase == "Running":
            return JobStatus(job_id, "running", node=pod_node(sorted(pods, key=_created)))
        return JobStatus(job_id, "pending", reason=waiting.reason if waiting else None)

    @staticmethod
    def _failure(condition: Any, terminated: Any) -> str:
        if terminated is not None and terminated.reason == "OOMKilled":
            return "the job ran out of memory (resources.memory_gb)"
        if condition.reason == "DeadlineExceeded":
            return "the job hit its time limit (resources.time_hours)"
        if terminated is not None and terminated.exit_code:
            return f"exit code {terminated.exit_code}"
        return f"{condition.reason or 'failed'}: {condition.message or ''}".strip(": ")

    def _save_log(self, job: Any, pods: list[Any]) -> None:
        """Write the pod log to the spec's stdout file once, where the run collects logs."""
        path = (job.metadata.annotations or {}).get(ANNOTATION_STDOUT)
        if not path or not pods or not Path(path).parent.is_dir() or Path(path).exists():
            return
        text = self._pod_log(sorted(pods, key=_created)[-1].metadata.name, None)
        tmp = Path(path).with_name(f".{Path(path).name}.partial")
        tmp.write_text(text)
        tmp.replace(path)

    def metrics(self, job_id: str) -> dict[str, float | None]:
        status = self.status([job_id])[job_id]
        return {"processing_time_s": status.wall_time_s, "cpu_hours": status.cpu_hours,
                "peak_memory_gb": status.peak_memory_gb}

    # -- control ----------------------------------------------------------------------------
    def cancel(self, job_id: str) -> None:
        batch, core = self._apis()
        if MEMBER_SEP in job_id:
            self._cancel_member(job_id)
            return
        body = {"metadata": {"annotations": {ANNOTATION_CANCELLED: "true"}},
                "spec": {"suspend": True}}
        try:
            batch.patch_namespaced_job(job_id, self.namespace, body)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _cancel_member(self, member: str) -> None:
        """Note the index as cancelled on the Job, then delete its pod (the index fails)."""
        batch, core = self._apis()
        job_name, _, index = member.partition(MEMBER_SEP)
        try:
            job = batch.read_namespaced_job(job_name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        cancelled = cancelled_indexes(job) | {index}
        batch.patch_namespaced_job(job_name, self.namespace, {"metadata": {"annotations": {
            ANNOTATION_CANCELLED_INDEXES: ",".join(sorted(cancelled, key=int))}}})
        selector = f"{LABEL_JOB}={job_name},{INDEX_LABEL}={index}"
        for pod in core.list_namespaced_pod(self.namespace, label_selector=selector).items:
            try:
                core.delete_namespaced_pod(pod.metadata.name, self.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise

    def _pod_log(self, pod_name: str, tail_lines: int | None) -> str:
        _batch, core = self._apis()
        try:
            return core.read_namespaced_pod_log(pod_name, self.namespace, container=CONTAINER,
                                                tail_lines=tail_lines) or ""
        except ApiException as exc:
            if exc.status in (400, 404):  # container not started, or pod gone
                return ""
            raise

    def logs(self, job_id: str, tail_lines: int = 500) -> str:
        """The last lines of the job's pod logs (Kubernetes can tail by lines, not bytes)."""
        _batch, core = self._apis()
        pods = core.list_namespaced_pod(self.namespace,
                                        label_selector=f"{LABEL_JOB}={job_id}").items
        return "\n".join(self._pod_log(p.metadata.name, tail_lines)
                         for p in sorted(pods, key=_created))
