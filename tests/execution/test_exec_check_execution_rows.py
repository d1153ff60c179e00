"""A check evaluation's execution row is written in one statement
(``ccat_assets/dagster_face/check_execution_rows.py``), and reads back through Dagster's own
API exactly as Dagster's storage would have written it.

Integration: the same events stored in an instance with the pooled storage and in one with
Dagster's plain ``storage: postgres``, each on a scratch PostgreSQL database: an evaluation
with no planned row (as a batch run reports it) and a single run's evaluation of a planned
check (``dg.materialize``), which must update its planned row, not add one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.events.log import EventLogEntry

from bench.scratch_db import scratch_postgres_database
from tests.conftest import PG_URL, _postgres_reachable, require_service
from tests.execution.test_exec_pooled_storage import pooled_config

pytestmark = pytest.mark.integration

ASSET = dg.AssetKey("reduced")


@dg.asset(key=ASSET)
def _reduced() -> None:
    return None


@dg.asset_check(asset=ASSET, name="planned_check")
def _planned_check() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, metadata={"why": "below threshold"})


def _plain_config(url: str) -> dict[str, Any]:
    psycopg2_url = sa.make_url(url).set(drivername="postgresql+psycopg2")
    return {"storage": {"postgres": {
        "postgres_url": psycopg2_url.render_as_string(hide_password=False)}}}


@pytest.fixture(params=["pooled", "dagster"])
def instance(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    require_service(_postgres_reachable(), f"PostgreSQL at CCAT_TEST_DATABASE_URL={PG_URL!r}")
    with scratch_postgres_database(PG_URL, f"check_rows_{request.param}") as url:
        config = pooled_config(url) if request.param == "pooled" else _plain_config(url)
        (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
        with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
            yield instance


def evaluation_entry(run_id: str, check_name: str, partition: str, passed: bool
                     ) -> EventLogEntry:
    """An evaluation as a batch op reports it: in a run, no planned event before it."""
    evaluation = dg.AssetCheckEvaluation(asset_key=ASSET, check_name=check_name,
                                         passed=passed, partition=partition)
    event = DagsterEvent(event_type_value=DagsterEventType.ASSET_CHECK_EVALUATION.value,
                         job_name="batch", event_specific_data=evaluation)
    return EventLogEntry(error_info=None, level=logging.INFO, user_message="", run_id=run_id,
                         timestamp=time.time(), dagster_event=event)


def rows(instance: dg.DagsterInstance, check_name: str) -> list[tuple[Any, ...]]:
    """What Dagster reads back: (run, status, partition, passed) per execution, newest first."""
    history = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(ASSET, check_name), limit=10)
    return [(r.run_id, r.status.value, r.partition,
             r.event.get_dagster_event().event_specific_data.passed if r.event else None)
            for r in history]


def test_evaluations_without_a_planned_row_are_inserted(instance: dg.DagsterInstance) -> None:
    storage = instance.event_log_storage
    statements: list[str] = []
    sa.event.listen(storage._engine, "before_cursor_execute",  # noqa: SLF001
                    lambda *args: statements.append(args[2]))
    storage.store_event(evaluation_entry("run-a", "files", "scan-1", passed=True))
    storage.store_event(evaluation_entry("run-a", "files", "scan-2", passed=False))
    on_the_table = [s for s in statements if "asset_check_executions" in s]
    assert rows(instance, "files") == [("run-a", "FAILED", "scan-2", False),
                                       ("run-a", "SUCCEEDED", "scan-1", True)]
    if type(storage).__name__.startswith("Pooled"):
        assert len(on_the_table) == 2, on_the_table  # one per evaluation
    else:
        assert len(on_the_table) == 4, on_the_table  # Dagster's update, then its insert


def test_a_planned_checks_evaluation_updates_its_row(instance: dg.DagsterInstance) -> None:
    result = dg.materialize([_reduced, _planned_check], instance=instance)
    assert result.success
    assert rows(instance, "planned_check") == [(result.run_id, "FAILED", None, False)]
