"""Fixtures of the gap tests: a CONTINUOUS pipeline over three scans, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ccat_assets.settings import get_settings
from sensors import tick as sensor_tick
from tests.gaps.gapkit import SCANS, apply_pipeline, ingest


@pytest.fixture
def served_env(ccat_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings of an instance serving the test processing location, polling the (fast) test
    jobs often; a fresh state cache."""
    monkeypatch.setenv("CCAT_WORKFLOW_MANAGER_PROCESSING_LOCATION_ID", "test-processing")
    monkeypatch.setenv("CCAT_WORKFLOW_MANAGER_JOB_POLL_SECONDS", "0.2")
    get_settings.cache_clear()
    sensor_tick.forget_states()
    yield ccat_env
    sensor_tick.forget_states()
    get_settings.cache_clear()


@pytest.fixture
def continuous(served_env: Path, tmp_path: Path) -> Path:
    """The test pipeline (CONTINUOUS) applied, three scans of two source+line groups ingested."""
    apply_pipeline(tmp_path)
    ingest(tmp_path, SCANS)
    return tmp_path

@pytest.fixture
def manual(served_env: Path, tmp_path: Path) -> Path:
    """The test pipeline as MANUAL: nothing launches by itself; three scans ingested."""
    apply_pipeline(tmp_path, trigger={"type": "MANUAL"})
    ingest(tmp_path, SCANS)
    return tmp_path


# The daemon tests: a real dagster-daemon (tests/daemonkit.py, shared with tests/reliability)
# and the production PostgreSQL instance config (issue: deployment).
from tests.daemonkit import daemon_env_fixture, daemon_fixture  # noqa: E402, F401
from tests.deploy.conftest import postgres_dagster_home  # noqa: E402, F401
