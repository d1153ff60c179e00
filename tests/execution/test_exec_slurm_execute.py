"""The whole ``execute_partition`` path on the real loopback SLURM cluster, host runtime,
SFTP staging to the processing location, on both databases, with hostile values everywhere
a user can put them (sub-group values, parameters, environment) and secrets that must not
leak into logs, run metadata, the sbatch script or the manifest."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from ccat_assets.execution.execute import execute_partition, job_name
from ccat_assets.grouping import subgroup_key
from ccat_assets.opsdb import ExecutedReductionStep, PhysicalCopy, PhysicalCopyStatus, RunStatus
from ccat_assets.opsdb.session import session_scope
from ccat_assets.settings import get_settings
from resources.apptainer import HostRuntime
from resources.backends.slurm import SlurmBackend
from resources.backends.ssh import SSHTarget
from resources.staging import make_stager
from tests.execution.conftest import apply_and_ingest
from tests.factories import pipeline_spec

pytestmark = pytest.mark.integration
PASSPHRASE = "correct-horse-battery-staple-7731"


def _all_text(root: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


def test_execute_partition_on_slurm_with_hostile_values_and_no_leaked_secrets(
    ccat_env: Path, tmp_path: Path, slurm_target: SSHTarget, slurm_settings_env: None,
    make_services, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # paramiko's debug log included
    pwned = Path(f"/tmp/pwned-{uuid.uuid4().hex[:10]}")
    source = f"NGC 253; $(touch {pwned}) `touch {pwned}` ../../etc \"q\" 'q' a,b|c"
    tag = f"tag $(touch {pwned}); `touch {pwned}` \"dq\" 'sq'"
    spec = pipeline_spec(tmp_path / "processing", tag=tag)
    spec["locations"][0]["host"] = f"{slurm_target.user}@{slurm_target.host}:{slurm_target.port}"
    calibrate = spec["pipelines"][0]["steps"][0]
    calibrate["group_by"] = ["source", "line"]
    calibrate["config"]["environment"] = {"HOSTILE_ENV": f"$(touch {pwned})\n; touch {pwned}"}
    apply_and_ingest(tmp_path, spec, [("scan-001", source, "CO43")])

    key_text = Path(slurm_target.key_path).read_text()
    settings = SimpleNamespace(**{**get_settings().model_dump(), "slurm_key_path": None,
                                  "slurm_private_key": SecretStr(key_text),
                                  "slurm_key_passphrase": SecretStr(PASSPHRASE)})
    backend = SlurmBackend.from_settings(settings)  # the key comes from a secret, not a file
    log_lines: list[str] = []
    services = make_services(backend, HostRuntime(), make_stager, log=log_lines.append)
    key = subgroup_key(["source", "line"], [source, "CO43"])

    outcome = execute_partition(services, pipeline_name="chai_test", step_name="calibrate",
                                sub_group_key=key, dagster_run_id="dagster-run-1")

    assert outcome.status == RunStatus.COMPLETED and outcome.backend == "slurm"
    assert outcome.runtime == "host" and outcome.job_id.isdigit()
    kinds = sorted(p["type"] for p in outcome.products)
    assert kinds.count("INTERMEDIATE") == 2  # one per raw file
    assert {p["path"] for p in outcome.products if p["type"] == "LOG"} >= {
        "logs/program.log", "logs/stdout.log"}
    assert outcome.metrics["processing_time_s"] is not None
    assert outcome.metrics["cpu_hours"] is not None and outcome.metrics["exit_code"] == 0
    # the hostile sub-group value became a safe key and a path inside the base dir
    run_dir = Path(outcome.run_dir)
    base = get_settings().pipelines_dir
    assert base in run_dir.parents and not any(c in key for c in " $`;/\"'|,")
    # the parameter reached the program verbatim, and nothing was evaluated anywhere
    science = run_dir / "workspace/calibrate/science/out-0000.txt"
    assert science.read_text().endswith(f" {tag}\n")
    assert not pwned.exists()
    name = job_name("chai_test", "calibrate", outcome.run_id, outcome.run_dir)
    script = run_dir / "logs" / f".{name}.sbatch"
    assert "'HOSTILE_ENV=$(touch" in script.read_text()
    with session_scope() as s:
        run = s.get(ExecutedReductionStep, outcome.run_id)
        assert run.hpc_job_id == outcome.job_id and run.status == RunStatus.COMPLETED
        assert run.processing_time_s is not None
        staged = s.scalars(sa.select(PhysicalCopy).filter_by(
            status=PhysicalCopyStatus.STAGED)).all()
        assert len(staged) == 2  # staged over SFTP and recorded
        row_text = repr({c.name: getattr(run, c.name) for c in run.__table__.columns})

    # secrets: neither the key's contents nor its passphrase appear anywhere we write
    key_body = [line for line in key_text.splitlines() if line and not line.startswith("---")]
    assert key_body
    haystacks = {
        "log records": caplog.text, "run log": "\n".join(log_lines),
        "run directory (manifest, sbatch script, logs, outputs)": _all_text(run_dir),
        "run row": row_text, "outcome": repr(outcome), "backend": repr(backend.ssh.target),
    }
    for where, text in haystacks.items():
        assert PASSPHRASE not in text, where
        for line in key_body:
            assert line not in text, where
