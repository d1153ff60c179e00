"""deploy/dagster.postgres.yaml makes a working Dagster instance on a real PostgreSQL: the CLI
migrates it, runs, events and pool limits are stored there, and everything but storage equals
the embedded default (dagster.yaml), so the two cannot drift apart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_postgres_variant_equals_the_embedded_default_except_storage() -> None:
    embedded = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    production = yaml.safe_load((ROOT / "deploy" / "dagster.postgres.yaml").read_text())
    storage = production.pop("storage")
    assert production == embedded
    assert set(storage) == {"custom"}
    assert storage["custom"]["class"] == "PooledPostgresStorage"
    assert storage["custom"]["config"]["postgres_db"]["scheme"] == "postgresql+psycopg2"


@dg.asset(key=["ccat", "deploy_check", "noop"])
def _noop() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"ok": True})


@pytest.mark.integration
def test_postgres_instance_migrates_and_stores_runs_events_and_pools(
    postgres_dagster_home: Path,
) -> None:
    migrate = subprocess.run([str(BIN / "dagster"), "instance", "migrate"], env=os.environ.copy(),
                             capture_output=True, text=True, timeout=120, check=False)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    with dg.DagsterInstance.get() as instance:
        # Dagster's PostgreSQL storages, keeping their connections (pooled_storage.py).
        assert type(instance.run_storage).__name__ == "PooledPostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PooledPostgresEventLogStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_monitoring_enabled
        assert instance.run_retries_max_retries == 2
        assert not instance.run_retries_retry_on_asset_or_op_failure
        # The driver pinned by `scheme` (SQLAlchemy 2.1 would pick psycopg 3 without it).
        assert instance.run_storage.postgres_url.startswith("postgresql+psycopg2://")

        result = dg.materialize([_noop], instance=instance)
        assert result.success
        stored = instance.get_run_by_id(result.run_id)
        assert stored is not None and stored.status == dg.DagsterRunStatus.SUCCESS
        event = instance.get_latest_materialization_event(dg.AssetKey(["ccat", "deploy_check",
                                                                        "noop"]))
        assert event is not None and event.run_id == result.run_id

        instance.event_log_storage.set_concurrency_slots("ccat/deploy_check/noop", 2)
        assert instance.event_log_storage.get_concurrency_info(
            "ccat/deploy_check/noop").slot_count == 2
