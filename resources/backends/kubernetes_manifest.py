"""The batch/v1 Job of one job spec: a pure function, unit-tested without a cluster.

Why these choices: ``backoffLimit: 0`` and ``restartPolicy: Never`` because retries belong to
Dagster (which re-attaches rather than resubmits); ``activeDeadlineSeconds`` from
``time_hours`` so that a pod stuck pulling its image ends instead of pending forever;
requests equal limits (Guaranteed QoS, like a SLURM allocation); the workspace volume is
mounted at the same path as ``PIPELINE_BASE_DIR`` on the orchestrator, so the run's paths (in
the manifest, the env and the argv) mean the same inside the pod. Kubernetes object names
are DNS labels, so the deterministic job name is mapped to one (lowercase, a hash suffix)
and kept verbatim in an annotation.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from ccat_assets.execution.jobs import JobSpec
from resources.apptainer import HOST_PASSTHROUGH

MANAGED_BY = "ccat-workflow-manager"
LABEL_JOB = "ccat-workflow-manager/job"
ANNOTATION_NAME = "ccat-workflow-manager/name"
ANNOTATION_STDOUT = "ccat-workflow-manager/stdout-path"
ANNOTATION_CANCELLED = "ccat-workflow-manager/cancelled"
CONTAINER = "step"
WORKSPACE_VOLUME = "workspace"


@dataclass(frozen=True)
class K8sJobConfig:
    """Cluster-side choices, from K8S_* settings."""

    namespace: str
    image: str
    workspace_mount_path: str
    workspace_pvc: str | None = None
    workspace_host_path: str | None = None
    service_account: str | None = None
    ttl_seconds_after_finished: int = 7 * 24 * 3600
    image_pull_secret: str | None = None
    #: The orchestrator's own PATH, HOME, ... (the host runtime passes them) mean nothing in
    #: the image; dropping them lets the image's defaults apply.
    drop_env: tuple[str, ...] = HOST_PASSTHROUGH

    def __post_init__(self) -> None:
        if bool(self.workspace_pvc) == bool(self.workspace_host_path):
            raise ValueError("set exactly one of K8S_WORKSPACE_PVC and K8S_WORKSPACE_HOST_PATH "
                             "(the volume holding PIPELINE_BASE_DIR)")


def k8s_name(name: str) -> str:
    """A DNS-1123 label (<= 63 chars) for ``name``: readable prefix plus a hash suffix."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    slug = re.sub(r"-{2,}", "-", slug)[:52].rstrip("-") or "job"
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def _quantities(resources: dict[str, Any]) -> dict[str, str]:
    amounts = {"cpu": str(int(resources.get("cpu", 1) or 1))}
    if resources.get("memory_gb") is not None:
        amounts["memory"] = f"{math.ceil(float(resources['memory_gb']) * 1024)}Mi"
    gpu = int(resources.get("gpu", 0) or 0)
    if gpu > 0:
        amounts["nvidia.com/gpu"] = str(gpu)
    return amounts


def _volume(config: K8sJobConfig) -> client.V1Volume:
    if config.workspace_pvc:
        return client.V1Volume(
            name=WORKSPACE_VOLUME,
            persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                claim_name=config.workspace_pvc))
    return client.V1Volume(
        name=WORKSPACE_VOLUME,
        host_path=client.V1HostPathVolumeSource(path=config.workspace_host_path,
                                                type="Directory"))


def build_job(spec: JobSpec, config: K8sJobConfig, image: str | None = None) -> client.V1Job:
    """The Job object for ``spec``; ``image`` overrides the configured default image."""
    name = k8s_name(spec.name)
    labels = {"app.kubernetes.io/managed-by": MANAGED_BY, LABEL_JOB: name}
    amounts = _quantities(spec.resources)
    deadline = None
    if spec.resources.get("time_hours") is not None:
        deadline = max(60, math.ceil(float(spec.resources["time_hours"]) * 3600))
    container = client.V1Container(
        name=CONTAINER, image=image or config.image, command=list(spec.argv),
        env=[client.V1EnvVar(name=k, value=v) for k, v in sorted(spec.env.items())
             if k not in config.drop_env],
        working_dir=str(spec.workdir),
        resources=client.V1ResourceRequirements(requests=dict(amounts), limits=dict(amounts)),
        volume_mounts=[client.V1VolumeMount(name=WORKSPACE_VOLUME,
                                            mount_path=config.workspace_mount_path)],
        security_context=client.V1SecurityContext(allow_privilege_escalation=False),
    )
    pod = client.V1PodSpec(
        restart_policy="Never", containers=[container], volumes=[_volume(config)],
        service_account_name=config.service_account, enable_service_links=False,
        automount_service_account_token=bool(config.service_account),
        image_pull_secrets=([client.V1LocalObjectReference(name=config.image_pull_secret)]
                            if config.image_pull_secret else None),
    )
    return client.V1Job(
        api_version="batch/v1", kind="Job",
        metadata=client.V1ObjectMeta(
            name=name, namespace=config.namespace, labels=labels,
            annotations={ANNOTATION_NAME: spec.name,
                         ANNOTATION_STDOUT: str(spec.stdout_path)}),
        spec=client.V1JobSpec(
            backoff_limit=0, active_deadline_seconds=deadline,
            ttl_seconds_after_finished=config.ttl_seconds_after_finished,
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels),
                                              spec=pod),
        ),
    )


#: The annotation Kubernetes puts on each pod of an Indexed Job: the pod's index.
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
ANNOTATION_MEMBERS = "ccat-workflow-manager/members"


def task_script_path(name: str, spec: JobSpec, index: int) -> str:
    """Where member ``index``'s script goes: a dot-file beside the first member's logs (on
    the shared workspace, so the pod sees it at the same path; never taken for a product)."""
    return str(spec.stdout_path.parent / f".{name}-task-{index}.sh")


def build_indexed_job(name: str, specs: list[JobSpec], config: K8sJobConfig,
                      max_parallel: int | None = None) -> client.V1Job:
    """One Indexed Job for the members of a batch: pod ``i`` runs ``sh`` on member ``i``'s
    script (see ``render_task_script``), chosen through the pod's completion index.

    ``backoffLimitPerIndex: 0`` (Kubernetes >= 1.29) makes a failed member fail alone: its
    siblings keep running and the Job lists it in ``status.failedIndexes``.
    """
    if not specs:
        raise ValueError(f"indexed job {name}: no members")
    template = build_job(specs[0], config, image=specs[0].image)
    job_name = k8s_name(name)
    labels = {"app.kubernetes.io/managed-by": MANAGED_BY, LABEL_JOB: job_name}
    container = template.spec.template.spec.containers[0]
    script = task_script_path(name, specs[0], 0).replace("$", "$$")[: -len("0.sh")]
    container.command = ["/bin/sh", f"{script}$(CCAT_TASK_INDEX).sh"]
    container.env = [client.V1EnvVar(
        name="CCAT_TASK_INDEX", value_from=client.V1EnvVarSource(
            field_ref=client.V1ObjectFieldSelector(
                field_path=f"metadata.annotations['{INDEX_ANNOTATION}']")))]
    container.working_dir = str(specs[0].stdout_path.parent)
    template.metadata = client.V1ObjectMeta(
        name=job_name, namespace=config.namespace, labels=labels,
        annotations={ANNOTATION_NAME: name, ANNOTATION_MEMBERS: str(len(specs))})
    template.spec.template.metadata = client.V1ObjectMeta(labels=labels)
    template.spec.completion_mode = "Indexed"
    template.spec.completions = len(specs)
    template.spec.parallelism = min(max_parallel or len(specs), len(specs))
    if template.spec.active_deadline_seconds:  # time_hours is per member; the Job runs waves
        waves = math.ceil(len(specs) / template.spec.parallelism)
        template.spec.active_deadline_seconds *= waves
    template.spec.backoff_limit = None
    template.spec.backoff_limit_per_index = 0
    return template


def as_dict(job: client.V1Job) -> dict[str, Any]:
    """The Job as the API server receives it (camelCase, no None fields)."""
    return client.ApiClient().sanitize_for_serialization(job)
