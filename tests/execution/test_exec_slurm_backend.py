"""The SLURM backend against the real loopback cluster, through paramiko and sbatch.

One module-scoped batch submits every job at once (so the suite stays fast and the batched
status call is exercised for real), cancels one through the backend and kills another with
``scancel`` from a separate SSH connection, then polls all of them with one call per poll.
The tests below each check one outcome of that batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccat_assets.execution.jobs import JobSpec, JobStatus
from resources.backends.slurm import SlurmBackend
from resources.backends.ssh import HostKeyError, SSHConnection, SSHError, SSHTarget

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
PY = "/usr/bin/python3"
SMALL = {"cpu": 1, "memory_gb": 0.5, "time_hours": 0.1}
REPORT = ("import json, os, sys; print(json.dumps({'argv': sys.argv[1:], "
          "'env': {k: v for k, v in os.environ.items() if k.startswith('HOSTILE')}}))")


@dataclass
class Batch:
    backend: SlurmBackend
    root: Path
    token: str
    specs: dict[str, JobSpec] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    final: dict[str, JobStatus] = field(default_factory=dict)
    pwned: Path = Path("/nonexistent")
    hostile: dict[str, str] = field(default_factory=dict)
    polls: int = 0
    seconds: float = 0.0

    def spec(self, key: str, argv: list[str], env: dict[str, str] | None = None) -> JobSpec:
        job_dir = self.root / key
        job_dir.mkdir()
        spec = JobSpec(name=f"ccat-test-{self.token}-{key}", argv=argv,
                       env={"PATH": "/usr/bin:/bin", **(env or {})}, workdir=job_dir,
                       stdout_path=job_dir / "stdout.log", stderr_path=job_dir / "stderr.log",
                       resources=dict(SMALL))
        self.specs[key] = spec
        return spec

    def submit(self, key: str, argv: list[str], env: dict[str, str] | None = None) -> str:
        self.ids[key] = self.backend.submit(self.spec(key, argv, env))
        return self.ids[key]

    def wait(self, keys: list[str], done, timeout_s: float = 60) -> dict[str, JobStatus]:
        deadline = time.monotonic() + timeout_s
        while True:
            states = self.backend.status([self.ids[k] for k in keys])
            self.polls += 1
            by_key = {k: states[self.ids[k]] for k in keys}
            if all(done(s) for s in by_key.values()):
                return by_key
            assert time.monotonic() < deadline, f"jobs not done in {timeout_s} s: {by_key}"
            time.sleep(0.5)


def _submit_from_a_dying_process(target: SSHTarget, partition: str, spec_dir: Path,
                                 name: str) -> None:
    """Submit in a child process that exits without telling anyone the job id."""
    code = textwrap.dedent("""
        import json, os, pathlib, sys
        from ccat_assets.execution.jobs import JobSpec
        from resources.backends.slurm import SlurmBackend
        from resources.backends.ssh import SSHConnection, SSHTarget
        a = json.loads(sys.argv[1])
        d = pathlib.Path(a["dir"])
        target = SSHTarget(host=a["host"], port=a["port"], user=a["user"],
                           key_path=pathlib.Path(a["key"]),
                           known_hosts=pathlib.Path(a["known_hosts"]))
        spec = JobSpec(name=a["name"], argv=["/bin/echo", "orphan"],
                       env={"PATH": "/usr/bin:/bin"}, workdir=d, stdout_path=d / "stdout.log",
                       stderr_path=d / "stderr.log",
                       resources={"cpu": 1, "memory_gb": 0.5, "time_hours": 0.1})
        SlurmBackend(SSHConnection(target), partition=a["partition"]).submit(spec)
        os._exit(0)  # dies before anything could record the job id
    """)
    args = {"dir": str(spec_dir), "host": target.host, "port": target.port,
            "user": target.user, "key": str(target.key_path),
            "known_hosts": str(target.known_hosts), "partition": partition, "name": name}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code, json.dumps(args)], cwd=REPO, env=env,
                   check=True, timeout=60)


@pytest.fixture(scope="module")
def batch(slurm_target: SSHTarget, slurm_partition: str,
          tmp_path_factory: pytest.TempPathFactory) -> Batch:
    started = time.monotonic()
    token = uuid.uuid4().hex[:10]
    b = Batch(SlurmBackend(SSHConnection(slurm_target), partition=slurm_partition),
              tmp_path_factory.mktemp("slurm"), token)
    # the two long jobs first, so that they hold the node's CPUs while being stopped
    b.submit("cancel", ["/bin/sleep", "60"])
    b.submit("killed", ["/bin/sleep", "60"])
    b.wait(["cancel", "killed"], lambda s: s.state == "running", timeout_s=30)
    b.backend.cancel(b.ids["cancel"])
    outsider = SSHConnection(slurm_target)  # someone else, on another connection
    assert outsider.run(["scancel", b.ids["killed"]]).ok
    outsider.close()

    b.submit("ok", [PY, "-c", "import time; x = b'1' * 200_000_000; time.sleep(2.5); "
                              "print('ok', len(x))"])
    b.submit("fail", ["/bin/sh", "-c", "echo failing >&2; exit 3"])
    b.pwned = Path(f"/tmp/pwned-{token}")
    b.hostile = {
        "HOSTILE_SUBST": f"$(touch {b.pwned})",
        "HOSTILE_BACKTICK": f"`touch {b.pwned}`",
        "HOSTILE_QUOTES": f"'; touch {b.pwned}; echo '\"; touch {b.pwned}; \"",
        "HOSTILE_NEWLINE": f"first line\ntouch {b.pwned}\n#SBATCH --wrap=x",
        "HOSTILE_SEMICOLON": f"a; touch {b.pwned} && echo b | cat > {b.pwned}",
        "HOSTILE_COMMA_EQ": "x=1,y=2,\"z\"",
    }
    b.submit("hostile", [PY, "-c", REPORT, *b.hostile.values(), "$HOME", "*"],
             env=b.hostile)
    orphan_dir = b.root / "orphan"
    orphan_dir.mkdir()
    _submit_from_a_dying_process(slurm_target, slurm_partition, orphan_dir,
                                 f"ccat-test-{token}-orphan")
    b.final = b.wait(["cancel", "killed", "ok", "fail", "hostile"], lambda s: s.finished)
    b.seconds = time.monotonic() - started
    return b


def test_completed_job_has_exit_code_zero_and_metrics_from_sacct(batch: Batch) -> None:
    status = batch.final["ok"]
    assert status.state == "completed" and status.exit_code == 0 and status.reason is None
    assert status.wall_time_s is not None and status.wall_time_s >= 2
    assert status.cpu_hours is not None and status.cpu_hours > 0
    # MaxRSS of the batch step: the job held 200 MB
    assert status.peak_memory_gb is not None and 0.15 < status.peak_memory_gb < 1.0
    assert "ok 200000000" in batch.specs["ok"].stdout_path.read_text()
    assert "ok 200000000" in batch.backend.logs(batch.ids["ok"])
    metrics = batch.backend.metrics(batch.ids["ok"])
    assert metrics["processing_time_s"] == status.wall_time_s


def test_failing_job_reports_its_exit_code(batch: Batch) -> None:
    status = batch.final["fail"]
    assert (status.state, status.exit_code, status.reason) == ("failed", 3, "exit code 3")
    assert "failing" in batch.specs["fail"].stderr_path.read_text()


def test_cancel_through_the_backend(batch: Batch) -> None:
    status = batch.final["cancel"]
    assert status.state == "cancelled" and "cancelled" in status.reason
    assert status.wall_time_s is not None and status.wall_time_s < 50


def test_job_killed_from_outside_is_seen_as_cancelled(batch: Batch) -> None:
    status = batch.final["killed"]
    assert status.state == "cancelled" and status.finished


def test_hostile_values_reach_the_program_verbatim_and_nothing_is_evaluated(
    batch: Batch,
) -> None:
    assert batch.final["hostile"].state == "completed"
    report = json.loads(batch.specs["hostile"].stdout_path.read_text())
    assert report["env"] == batch.hostile
    assert report["argv"] == [*batch.hostile.values(), "$HOME", "*"]
    assert not batch.pwned.exists()
    script = Path(batch.backend.script_path(batch.specs["hostile"])).read_text()
    header = [line for line in script.splitlines()[:3] if line.startswith("#")]
    assert len(header) == 2 and not any(line.startswith("#SBATCH") for line in header)


def test_find_reattaches_to_a_job_whose_submitter_died(batch: Batch,
                                                       slurm_target: SSHTarget,
                                                       slurm_partition: str) -> None:
    name = f"ccat-test-{batch.token}-orphan"
    fresh = SlurmBackend(SSHConnection(slurm_target), partition=slurm_partition)
    job_id = fresh.find(name)
    assert job_id is not None
    orphan_dir = batch.root / "orphan"
    spec = JobSpec(name=name, argv=["/bin/echo", "again"], env={}, workdir=orphan_dir,
                   stdout_path=orphan_dir / "x.log", stderr_path=orphan_dir / "x.log")
    assert fresh.submit(spec) == job_id  # a second submission re-attaches instead
    assert fresh.find_all(name) == [job_id]
    final = fresh.status([job_id])[job_id]
    deadline = time.monotonic() + 30
    while not final.finished and time.monotonic() < deadline:
        time.sleep(0.5)
        final = fresh.status([job_id])[job_id]
    assert final.state == "completed"
    assert (batch.root / "orphan" / "stdout.log").read_text() == "orphan\n"
    assert fresh.find(f"ccat-test-{batch.token}-never-submitted") is None
    # the same name from another instance (another run directory) is not taken for ours
    other_dir = batch.root / "other-instance"
    other_dir.mkdir()
    other = JobSpec(name=name, argv=["/bin/true"], env={}, workdir=other_dir,
                    stdout_path=other_dir / "o.log", stderr_path=other_dir / "o.log")
    other_id = fresh.submit(other)
    assert other_id != job_id and fresh.find(name, orphan_dir) == job_id


def test_status_of_many_jobs_is_one_ssh_round_trip(batch: Batch) -> None:
    calls = []
    real = batch.backend.ssh._exec

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    batch.backend.ssh._exec = counting
    try:
        states = batch.backend.status(list(batch.ids.values()) + ["999999"])
    finally:
        batch.backend.ssh._exec = real
    assert len(calls) == 1
    assert states["999999"].state == "unknown"
    assert {states[batch.ids[k]].state for k in ("ok", "fail", "cancel")} == {
        "completed", "failed", "cancelled"}
    print(f"\nslurm batch: {batch.seconds:.1f} s, {batch.polls} polls")


def test_lost_sbatch_answer_is_not_resubmitted(batch: Batch, slurm_target: SSHTarget,
                                               slurm_partition: str) -> None:
    """sbatch runs, then the connection drops before its answer: submit() must find the job
    SLURM accepted instead of submitting a second one."""
    backend = SlurmBackend(SSHConnection(slurm_target), partition=slurm_partition)
    real_run = backend.ssh.run
    sbatch_calls = []

    def flaky(argv, **kwargs):
        result = real_run(argv, **kwargs)
        if argv[0] == "sbatch":
            sbatch_calls.append(result.stdout)
            backend.ssh.close()
            raise SSHError("connection reset after sbatch")
        return result

    backend.ssh.run = flaky
    spec_dir = batch.root / "lost"
    spec_dir.mkdir()
    spec = JobSpec(name=f"ccat-test-{batch.token}-lost", argv=["/bin/true"], env={},
                   workdir=spec_dir, stdout_path=spec_dir / "o.log",
                   stderr_path=spec_dir / "e.log", resources=dict(SMALL))
    job_id = backend.submit(spec)
    assert len(sbatch_calls) == 1 and sbatch_calls[0].strip().startswith(job_id)
    assert SlurmBackend(SSHConnection(slurm_target)).find_all(spec.name) == [job_id]


def test_connection_is_reused_and_reopened_after_it_drops(slurm_target: SSHTarget) -> None:
    backend = SlurmBackend(SSHConnection(slurm_target))
    backend.status(["1"])
    backend.status(["1"])
    assert backend.ssh.connects == 1
    backend.ssh.client().get_transport().close()  # the network drops
    assert backend.status(["1"])["1"].job_id == "1"
    assert backend.ssh.connects == 2


def test_unknown_or_changed_host_key_is_refused(slurm_target: SSHTarget,
                                                tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    with pytest.raises(HostKeyError, match="not in the known_hosts"):
        SSHConnection(SSHTarget(**{**slurm_target.__dict__, "known_hosts": empty})).run(["true"])
    forged = tmp_path / "known_hosts_forged"
    other_key = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    forged.write_text(f"[{slurm_target.host}]:{slurm_target.port} {other_key}\n")
    with pytest.raises(HostKeyError, match="does not match"):
        SSHConnection(SSHTarget(**{**slurm_target.__dict__, "known_hosts": forged})).run(["true"])
