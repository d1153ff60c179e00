"""The Kubernetes backend: the Job manifest exactly, and the backend's logic against an
in-memory stand-in for the API server (no Kubernetes API server runs here). A test against a
live cluster runs only when ``CCAT_TEST_KUBECONFIG`` names a kubeconfig."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ccat_assets.execution.jobs import JobSpec
from resources.backends.kubernetes import KubernetesBackend
from resources.backends.kubernetes_manifest import K8sJobConfig, as_dict, build_job, k8s_name

RUN = Path("/data/pipelines/chai/scan=s1/calibrate/run-7")
CONFIG = K8sJobConfig(namespace="ccat-workflows", image="ghcr.io/ccatobs/chai:1.0",
                      workspace_mount_path="/data/pipelines", workspace_pvc="ccat-workspace")


def _spec(name: str = "ccat-chai_test-calibrate-7", **resources) -> JobSpec:
    return JobSpec(
        name=name, argv=["chai-calibrate", "--in", "$(not evaluated)"],
        env={"WORKFLOW_STEP": "calibrate", "PATH": "/orchestrator/bin", "A": "x,y=z"},
        workdir=RUN / "workspace/calibrate", stdout_path=RUN / "logs/stdout.log",
        stderr_path=RUN / "logs/stderr.log",
        resources=resources or {"cpu": 2, "memory_gb": 1.5, "time_hours": 0.5, "gpu": 1})


def test_job_manifest() -> None:
    job = as_dict(build_job(_spec(), CONFIG))
    name = k8s_name("ccat-chai_test-calibrate-7")
    labels = {"app.kubernetes.io/managed-by": "ccat-workflow-manager",
              "ccat-workflow-manager/job": name}
    amounts = {"cpu": "2", "memory": "1536Mi", "nvidia.com/gpu": "1"}
    assert job == {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": name, "namespace": "ccat-workflows", "labels": labels,
            "annotations": {"ccat-workflow-manager/name": "ccat-chai_test-calibrate-7",
                            "ccat-workflow-manager/stdout-path": f"{RUN}/logs/stdout.log"}},
        "spec": {
            "backoffLimit": 0, "activeDeadlineSeconds": 1800,
            "ttlSecondsAfterFinished": 604800,
            "template": {"metadata": {"labels": labels}, "spec": {
                "restartPolicy": "Never", "enableServiceLinks": False,
                "automountServiceAccountToken": False,
                "containers": [{
                    "name": "step", "image": "ghcr.io/ccatobs/chai:1.0",
                    "command": ["chai-calibrate", "--in", "$(not evaluated)"],
                    "env": [{"name": "A", "value": "x,y=z"},
                            {"name": "WORKFLOW_STEP", "value": "calibrate"}],
                    "workingDir": f"{RUN}/workspace/calibrate",
                    "resources": {"requests": amounts, "limits": amounts},
                    "volumeMounts": [{"name": "workspace", "mountPath": "/data/pipelines"}],
                    "securityContext": {"allowPrivilegeEscalation": False},
                }],
                "volumes": [{"name": "workspace",
                             "persistentVolumeClaim": {"claimName": "ccat-workspace"}}],
            }},
        },
    }


def test_names_are_dns_labels_and_distinct() -> None:
    long = "ccat-" + "Very_Long.Pipeline" * 6 + "-step-123"
    for name in (long, "ccat-a-b-1", "ccat-A-b-1", "ccat-a_b-1"):
        label = k8s_name(name)
        assert len(label) <= 63 and label == label.lower()
        assert label[0].isalnum() and label[-1].isalnum()
    assert len({k8s_name(n) for n in ("ccat-A-b-1", "ccat-a-b-1", "ccat-a_b-1")}) == 3


def test_host_path_volume_and_exactly_one_workspace_source() -> None:
    config = K8sJobConfig(namespace="n", image="i", workspace_mount_path="/w",
                          workspace_host_path="/srv/w")
    volume = as_dict(build_job(_spec(cpu=1), config))["spec"]["template"]["spec"]["volumes"][0]
    assert volume == {"name": "workspace", "hostPath": {"path": "/srv/w", "type": "Directory"}}
    with pytest.raises(ValueError, match="exactly one"):
        K8sJobConfig(namespace="n", image="i", workspace_mount_path="/w")


# -- the backend against an in-memory API -------------------------------------------------

class FakeApi:
    """Just enough of BatchV1Api + CoreV1Api: jobs and pods by label selector."""

    def __init__(self) -> None:
        self.jobs: dict[str, client.V1Job] = {}
        self.pods: list[client.V1Pod] = []
        self.calls: list[str] = []
        self.logs: dict[str, str] = {}

    def create_namespaced_job(self, namespace, job):
        self.calls.append("create")
        if job.metadata.name in self.jobs:
            raise ApiException(status=409, reason="AlreadyExists")
        job.status = client.V1JobStatus()
        self.jobs[job.metadata.name] = job

    def read_namespaced_job(self, name, namespace):
        if name not in self.jobs:
            raise ApiException(status=404, reason="NotFound")
        return self.jobs[name]

    @staticmethod
    def _selected(selector: str, labels: dict) -> bool:
        key, _, values = selector.partition(" in (")
        if values:
            return labels.get(key) in values.rstrip(")").split(",")
        return all(labels.get(k) == v for k, _, v in
                   (term.partition("=") for term in selector.split(",")))

    def list_namespaced_job(self, namespace, label_selector):
        self.calls.append("list_jobs")
        return SimpleNamespace(items=[j for j in self.jobs.values()
                                      if self._selected(label_selector, j.metadata.labels)])

    def list_namespaced_pod(self, namespace, label_selector):
        self.calls.append("list_pods")
        return SimpleNamespace(items=[p for p in self.pods
                                      if self._selected(label_selector, p.metadata.labels)])

    def patch_namespaced_job(self, name, namespace, body):
        job = self.jobs[name]
        job.metadata.annotations.update(body["metadata"]["annotations"])
        if "spec" in body:
            job.spec.suspend = body["spec"]["suspend"]

    def delete_namespaced_pod(self, name, namespace):
        self.calls.append(f"delete {name}")
        self.pods = [p for p in self.pods if p.metadata.name != name]

    def read_namespaced_pod_log(self, name, namespace, container, tail_lines=None):
        return self.logs.get(name, "")

    # helpers for the tests: what the cluster would do
    def pod(self, job_id: str, *, phase: str, terminated=None, waiting=None,
            index: int | None = None) -> None:
        state = client.V1ContainerState(terminated=terminated, waiting=waiting)
        labels = {"ccat-workflow-manager/job": job_id}
        if index is not None:
            labels["batch.kubernetes.io/job-completion-index"] = str(index)
        self.pods.append(client.V1Pod(
            metadata=client.V1ObjectMeta(
                name=f"{job_id}-pod" + (f"-{index}" if index is not None else ""),
                labels=labels,
                creation_timestamp=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),
            status=client.V1PodStatus(phase=phase, container_statuses=[client.V1ContainerStatus(
                name="step", state=state, image="i", image_id="", ready=False,
                restart_count=0)])))

    def condition(self, job_id: str, kind: str, reason: str | None = None) -> None:
        self.jobs[job_id].status.conditions = [client.V1JobCondition(
            type=kind, status="True", reason=reason)]


def _terminated(code: int, seconds: float, reason: str | None = None):
    start = dt.datetime(2026, 1, 1, 3, 0, tzinfo=dt.UTC)
    return client.V1ContainerStateTerminated(exit_code=code, reason=reason, started_at=start,
                                             finished_at=start + dt.timedelta(seconds=seconds))


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def backend(api: FakeApi) -> KubernetesBackend:
    return KubernetesBackend(CONFIG, batch_api=api, core_api=api)


def test_submit_is_idempotent_and_find_reattaches(backend: KubernetesBackend,
                                                  api: FakeApi) -> None:
    spec = _spec()
    assert backend.find(spec.name) is None
    job_id = backend.submit(spec)
    assert backend.submit(spec) == job_id  # 409 -> the existing Job
    assert list(api.jobs) == [job_id]
    fresh = KubernetesBackend(CONFIG, batch_api=api, core_api=api)
    assert fresh.find(spec.name) == job_id


def test_status_maps_pod_and_job_states_in_two_calls(backend: KubernetesBackend,
                                                     api: FakeApi, tmp_path: Path) -> None:
    names = ["ccat-p-s-1", "ccat-p-s-2", "ccat-p-s-3", "ccat-p-s-4", "ccat-p-s-5"]
    ids = [backend.submit(_spec(n, cpu=1)) for n in names]
    api.pod(ids[0], phase="Running")
    api.pod(ids[1], phase="Succeeded", terminated=_terminated(0, 42.5))
    api.condition(ids[1], "Complete")
    api.pod(ids[2], phase="Failed", terminated=_terminated(137, 3, "OOMKilled"))
    api.condition(ids[2], "Failed", "BackoffLimitExceeded")
    api.pod(ids[3], phase="Pending", waiting=client.V1ContainerStateWaiting(
        reason="ImagePullBackOff", message="not found"))
    api.calls.clear()
    states = backend.status([*ids, "ccat-gone-0000000000"])
    assert api.calls == ["list_jobs", "list_pods"]
    assert states[ids[0]].state == "running"
    assert (states[ids[1]].state, states[ids[1]].exit_code, states[ids[1]].wall_time_s) == (
        "completed", 0, 42.5)
    assert states[ids[2]].state == "failed" and "out of memory" in states[ids[2]].reason
    assert states[ids[3]].state == "pending" and "ImagePullBackOff" in states[ids[3]].reason
    assert states[ids[4]].state == "pending"
    assert states["ccat-gone-0000000000"].state == "unknown"
    assert states[ids[1]].cpu_hours is None  # Kubernetes does not measure it


def test_deadline_exceeded_is_a_time_limit_failure(backend: KubernetesBackend,
                                                   api: FakeApi) -> None:
    job_id = backend.submit(_spec(cpu=1, time_hours=0.1))
    api.condition(job_id, "Failed", "DeadlineExceeded")
    status = backend.status([job_id])[job_id]
    assert status.state == "failed" and "time limit" in status.reason


def test_cancel_suspends_and_marks_the_job(backend: KubernetesBackend, api: FakeApi) -> None:
    job_id = backend.submit(_spec(cpu=1))
    api.pod(job_id, phase="Running")
    backend.cancel(job_id)
    assert api.jobs[job_id].spec.suspend is True
    assert backend.status([job_id])[job_id].state == "cancelled"


def test_finished_job_log_is_written_where_the_run_collects_logs(api: FakeApi,
                                                                 tmp_path: Path) -> None:
    backend = KubernetesBackend(CONFIG, batch_api=api, core_api=api)
    spec = JobSpec(name="ccat-p-s-9", argv=["x"], env={}, workdir=tmp_path,
                   stdout_path=tmp_path / "stdout.log", stderr_path=tmp_path / "stderr.log",
                   resources={"cpu": 1})
    job_id = backend.submit(spec)
    api.pod(job_id, phase="Succeeded", terminated=_terminated(0, 1))
    api.condition(job_id, "Complete")
    api.logs[f"{job_id}-pod"] = "reduced 3 scans\n"
    assert backend.status([job_id])[job_id].state == "completed"
    assert (tmp_path / "stdout.log").read_text() == "reduced 3 scans\n"
    assert backend.logs(job_id) == "reduced 3 scans\n"


def test_live_cluster_runs_a_job() -> None:
    """Needs a real cluster: set CCAT_TEST_KUBECONFIG (and CCAT_TEST_K8S_NAMESPACE)."""
    kubeconfig = os.environ.get("CCAT_TEST_KUBECONFIG")
    if not kubeconfig:
        pytest.skip("no Kubernetes API server here: set CCAT_TEST_KUBECONFIG to run this test")
    config = K8sJobConfig(namespace=os.environ.get("CCAT_TEST_K8S_NAMESPACE", "default"),
                          image="busybox:1.36", workspace_mount_path="/workspace",
                          workspace_host_path="/tmp")
    backend = KubernetesBackend(config, kubeconfig=kubeconfig)
    spec = JobSpec(name=f"ccat-live-test-{int(time.time())}", argv=["sh", "-c", "echo hi"],
                   env={}, workdir=Path("/workspace"), stdout_path=Path("/nonexistent/out"),
                   stderr_path=Path("/nonexistent/err"),
                   resources={"cpu": 1, "memory_gb": 0.1, "time_hours": 0.1})
    job_id = backend.submit(spec)
    deadline = time.monotonic() + 120
    while not (status := backend.status([job_id])[job_id]).finished:
        assert time.monotonic() < deadline, status
        time.sleep(2)
    assert status.state == "completed" and "hi" in backend.logs(job_id)
