"""PostgreSQL restarted (``pg_ctlcluster ... restart``) while a run's local job is polled: the
run completes, every product is recorded once, and no row is left in flight. The engine's
``pool_pre_ping`` replaces the connections the restart killed. Needs root and the local
cluster's ``pg_ctlcluster`` (skips, or fails under ``CCAT_REQUIRE_INTEGRATION=1``, without)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccat_assets.execute import execute_partition
from ccat_assets.opsdb import RunStatus, migrate
from tests.conftest import PG_URL, _postgres_reachable, postgres_schema_url, require_service
from tests.reliability.conftest import (
    KEY,
    PIPELINE,
    STEP,
    assert_no_live_in_flight_rows,
    local_services,
    product_paths,
    runs,
)

pytestmark = pytest.mark.integration
CLUSTERS = Path("/etc/postgresql")


@pytest.fixture
def db_url() -> Iterator[str]:
    """This module runs on PostgreSQL only (it overrides the two-database fixture)."""
    require_service(_postgres_reachable(), f"PostgreSQL at CCAT_TEST_DATABASE_URL={PG_URL!r}")
    for url in postgres_schema_url(PG_URL):
        migrate.upgrade(url)
        yield url


@pytest.fixture
def cluster() -> str:
    """The version of the local cluster ``pg_ctlcluster`` restarts."""
    versions = sorted(p.name for p in CLUSTERS.iterdir()) if CLUSTERS.is_dir() else []
    require_service(bool(versions) and shutil.which("pg_ctlcluster") is not None
                    and os.geteuid() == 0, "a local PostgreSQL cluster to restart (root)")
    return versions[-1]


def _restart_postgres(version: str) -> float:
    started = time.monotonic()
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
                   check=True, capture_output=True, timeout=120)
    return time.monotonic() - started


def test_postgres_restart_while_polling(cluster: str, make_pipeline) -> None:
    make_pipeline({"sleep_s": 5, "n_files": 3})
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = execute_partition(
                local_services(), pipeline_name=PIPELINE, step_name=STEP, sub_group_key=KEY,
                dagster_run_id="d-pg")
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not (runs() and runs()[0].status == RunStatus.RUNNING):
        assert time.monotonic() < deadline and thread.is_alive(), outcome
        time.sleep(0.1)
    _restart_postgres(cluster)
    thread.join(120)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert outcome["result"].status == RunStatus.COMPLETED
    [row] = runs()
    assert row.status == RunStatus.COMPLETED
    paths = product_paths(row.id)
    assert len(paths) == len(set(paths)) and sum(p.startswith("output/") for p in paths) == 4
    assert_no_live_in_flight_rows()
