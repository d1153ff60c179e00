"""Fixtures for the execution tests: the loopback SLURM cluster over SSH, and a pipeline in
the ops-db ready to run.

The SLURM fixtures need ``bash scripts/services/up.sh`` and ``. scripts/services/env.sh``;
without them they skip locally and fail under ``CCAT_REQUIRE_INTEGRATION=1``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ccat_assets.cli import cli
from ccat_assets.execution.execute import ExecutionServices, PollPolicy
from ccat_assets.opsdb.session import session_factory
from ccat_assets.settings import get_settings
from resources.backends.ssh import SSHConnection, SSHTarget
from tests.conftest import require_service
from tests.factories import write_observations, write_spec


def slurm_target_from_env(**overrides: Any) -> SSHTarget | None:
    env = os.environ
    needed = ("CCAT_TEST_SLURM_SSH_HOST", "CCAT_TEST_SLURM_SSH_KEY",
              "CCAT_TEST_SLURM_KNOWN_HOSTS")
    if not all(env.get(k) for k in needed) or not Path(env["CCAT_TEST_SLURM_SSH_KEY"]).is_file():
        return None
    values: dict[str, Any] = dict(
        host=env["CCAT_TEST_SLURM_SSH_HOST"], port=int(env.get("CCAT_TEST_SLURM_SSH_PORT", 22)),
        user=env.get("CCAT_TEST_SLURM_SSH_USER", "root"),
        key_path=Path(env["CCAT_TEST_SLURM_SSH_KEY"]),
        known_hosts=Path(env["CCAT_TEST_SLURM_KNOWN_HOSTS"]), connect_timeout_s=5,
    )
    values.update(overrides)
    return SSHTarget(**values)


def _reachable(target: SSHTarget | None) -> bool:
    if target is None:
        return False
    connection = SSHConnection(target, retries=1)
    try:
        return connection.run(["sinfo", "-h", "-o", "%a"], timeout_s=15).ok
    except Exception:
        return False
    finally:
        connection.close()


@pytest.fixture(scope="session")
def slurm_target() -> SSHTarget:
    """The loopback login node; skip (or fail under CI) when the services are not up."""
    target = slurm_target_from_env()
    require_service(_reachable(target),
                    "SLURM over SSH (bash scripts/services/up.sh; . scripts/services/env.sh)")
    return target


@pytest.fixture(scope="session")
def slurm_partition() -> str:
    return os.environ.get("CCAT_TEST_SLURM_PARTITION", "")


@pytest.fixture
def slurm_settings_env(slurm_target: SSHTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    """CCAT_WORKFLOW_MANAGER_SLURM_* pointing at the loopback cluster."""
    for key, value in {
        "SLURM_HOST": slurm_target.host, "SLURM_PORT": str(slurm_target.port),
        "SLURM_USER": slurm_target.user, "SLURM_KEY_PATH": str(slurm_target.key_path),
        "SLURM_KNOWN_HOSTS": str(slurm_target.known_hosts),
        "SLURM_PARTITION": os.environ.get("CCAT_TEST_SLURM_PARTITION", ""),
    }.items():
        monkeypatch.setenv(f"CCAT_WORKFLOW_MANAGER_{key}", value)
    get_settings.cache_clear()


def apply_and_ingest(tmp_path: Path, spec: dict[str, Any],
                     scans: list[tuple[str, str, str]]) -> None:
    """Apply a pipeline spec and ingest raw data for ``scans`` through the CLI."""
    runner = CliRunner()
    result = runner.invoke(cli, ["apply", "--no-reload",
                                 str(write_spec(tmp_path / "pipeline.yaml", spec))])
    assert result.exit_code == 0, result.output
    manifest = write_observations(tmp_path / "archive", scans)
    result = runner.invoke(cli, ["ingest", str(manifest)])
    assert result.exit_code == 0, result.output


@pytest.fixture
def make_services() -> Callable[..., ExecutionServices]:
    """ExecutionServices on the configured ops-db with a fast poll."""
    def build(backend, runtime, stager_factory, *, log=None) -> ExecutionServices:
        lines: list[str] = []
        return ExecutionServices(
            sessions=session_factory(), backend=backend, runtime=runtime,
            stager_factory=stager_factory, base_dir=get_settings().pipelines_dir,
            log=log or lines.append, poll=PollPolicy(min_s=0.3, max_s=1.0, factor=1.5))
    return build
