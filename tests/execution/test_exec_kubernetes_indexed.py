"""A batch on Kubernetes is one Indexed Job: its manifest exactly, its member scripts run for
real under ``sh``, member states from the Job's index lists and the pods (an in-memory
stand-in for the API server: none runs here), and cancelling one member."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kubernetes import client

from ccat_assets.execution.jobs import JobSpec
from resources.backends.kubernetes import KubernetesBackend
from resources.backends.kubernetes_indexed import parse_indexes
from resources.backends.kubernetes_manifest import K8sJobConfig, as_dict, build_indexed_job
from tests.execution.test_exec_kubernetes import CONFIG, FakeApi, _terminated

NAME = "ccat-chai_test-calibrate-b7-n3-0badcafe"


def _member(root: Path, i: int, **resources) -> JobSpec:
    run = root / f"scan=s{i}/calibrate/run-{7 + i}"
    (run / "logs").mkdir(parents=True, exist_ok=True)
    (run / "workspace").mkdir(parents=True, exist_ok=True)
    return JobSpec(
        name=f"ccat-chai_test-calibrate-{7 + i}", image="ghcr.io/ccatobs/chai:1.0",
        argv=[sys.executable, "-c", "import os,sys; print(sys.argv[1:], os.environ['M'])",
              "$(not evaluated)", f"member {i}"],
        env={"M": f"m{i}; $(touch x)", "PATH": "/orchestrator/bin"}, workdir=run / "workspace",
        stdout_path=run / "logs/stdout.log", stderr_path=run / "logs/stderr.log",
        resources=resources or {"cpu": 1, "time_hours": 0.5})


def test_indexed_job_manifest(tmp_path: Path) -> None:
    specs = [_member(tmp_path, i) for i in range(3)]
    job = as_dict(build_indexed_job(NAME, specs, CONFIG, max_parallel=2))
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == (
        "Indexed", 3, 2)
    assert spec["backoffLimitPerIndex"] == 0 and "backoffLimit" not in spec
    assert spec["activeDeadlineSeconds"] == 1800 * 2  # two waves of members
    container = spec["template"]["spec"]["containers"][0]
    first_logs = specs[0].stdout_path.parent
    assert container["command"] == [
        "/bin/sh", f"{first_logs}/.{NAME}-task-$(CCAT_TASK_INDEX).sh"]
    assert container["env"] == [{"name": "CCAT_TASK_INDEX", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}]
    assert container["image"] == "ghcr.io/ccatobs/chai:1.0"
    assert job["metadata"]["annotations"]["ccat-workflow-manager/name"] == NAME


def test_member_scripts_run_each_member_verbatim(tmp_path: Path) -> None:
    api = FakeApi()
    backend = KubernetesBackend(CONFIG, batch_api=api, core_api=api)
    specs = [_member(tmp_path, i) for i in range(3)]
    ids = backend.submit_array(NAME, specs, max_parallel=2)
    assert backend.submit_array(NAME, specs, max_parallel=2) == ids  # 409: re-attached
    job_name = ids[0].split("#")[0]
    assert ids == [f"{job_name}#{i}" for i in range(3)] and list(api.jobs) == [job_name]
    for i, spec in enumerate(specs):  # what pod i runs, run here under a real sh
        script = specs[0].stdout_path.parent / f".{NAME}-task-{i}.sh"
        subprocess.run(["/bin/sh", str(script)], check=True, env={"PATH": os.defpath},
                       cwd=tmp_path)
        out = spec.stdout_path.read_text()
        assert out == f"['$(not evaluated)', 'member {i}'] m{i}; $(touch x)\n"
    assert not (tmp_path / "x").exists()


def test_member_states_from_index_lists_and_pods_in_two_calls(tmp_path: Path) -> None:
    api = FakeApi()
    backend = KubernetesBackend(CONFIG, batch_api=api, core_api=api)
    ids = backend.submit_array(NAME, [_member(tmp_path, i) for i in range(5)])
    job_name = ids[0].split("#")[0]
    api.jobs[job_name].status = client.V1JobStatus(completed_indexes="0", failed_indexes="1")
    api.pod(job_name, index=0, phase="Succeeded", terminated=_terminated(0, 12))
    api.pod(job_name, index=1, phase="Failed", terminated=_terminated(3, 2))
    api.pod(job_name, index=2, phase="Running")
    api.pod(job_name, index=3, phase="Pending", waiting=client.V1ContainerStateWaiting(
        reason="ImagePullBackOff", message="no such image"))
    api.calls.clear()
    states = backend.status(ids)
    assert api.calls == ["list_jobs", "list_pods"]
    assert (states[ids[0]].state, states[ids[0]].wall_time_s) == ("completed", 12)
    assert states[ids[1]].state == "failed" and states[ids[1]].reason == "exit code 3"
    assert states[ids[2]].state == "running"
    assert states[ids[3]].state == "pending" and "ImagePullBackOff" in states[ids[3]].reason
    assert states[ids[4]].state == "pending"

    backend.cancel(ids[2])  # one member: its pod goes, the others stay
    assert f"delete {job_name}-pod-2" in api.calls
    states = backend.status(ids)
    assert states[ids[2]].state == "cancelled" and states[ids[0]].state == "completed"


def test_index_lists() -> None:
    assert parse_indexes("0-2,5,7-8") == {"0", "1", "2", "5", "7", "8"}
    assert parse_indexes(None) == set() and parse_indexes("") == set()


def test_config_drop_env_keeps_orchestrator_variables_out(tmp_path: Path) -> None:
    config = K8sJobConfig(namespace="n", image="i", workspace_mount_path="/w",
                          workspace_pvc="p")
    api = FakeApi()
    KubernetesBackend(config, batch_api=api, core_api=api).submit_array(
        NAME, [_member(tmp_path, 0)])
    script = (_member(tmp_path, 0).stdout_path.parent / f".{NAME}-task-0.sh").read_text()
    assert "PATH=" not in script and "'M=m0; $(touch x)'" in script
