"""The instance's PostgreSQL storage keeps its connections open in every process.

``ccat_assets/dagster_face/pooled_storage.py``: the daemon, the code server and the run
workers reuse a few connections instead of connecting for every storage call. Integration: a
Dagster instance configured as ``deploy/dagster.postgres.yaml`` configures it, on a scratch
PostgreSQL database; the server's own view (``pg_stat_activity``) says which connections it
holds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from bench.scratch_db import scratch_postgres_database
from ccat_assets.dagster_face.pooled_storage import PooledPostgresStorage
from ccat_assets.opsdb.liveness import PING_AFTER_IDLE_S
from resources.dagster_storage import pool_storage_connections
from tests.conftest import PG_URL, _postgres_reachable, require_service
from tests.execution.test_exec_storage_pool import connections_to, store_events

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def pooled_config(url: str, pool: dict[str, Any] | None = None) -> dict[str, Any]:
    """The instance's ``storage:`` block as the deployed ``dagster.yaml`` writes it."""
    psycopg2_url = sa.make_url(url).set(drivername="postgresql+psycopg2")
    config: dict[str, Any] = {"postgres_url": psycopg2_url.render_as_string(hide_password=False)}
    if pool is not None:
        config["pool"] = pool
    return {"storage": {"custom": {"module": "ccat_assets.dagster_face.pooled_storage",
                                   "class": "PooledPostgresStorage", "config": config}}}


@pytest.fixture
def scratch_db() -> Iterator[tuple[str, str]]:
    require_service(_postgres_reachable(), f"PostgreSQL at CCAT_TEST_DATABASE_URL={PG_URL!r}")
    with scratch_postgres_database(PG_URL, "pooled_storage") as url:
        yield url, sa.make_url(url).database or ""


def instance_at(home: Path, url: str, pool: dict[str, Any] | None = None
                ) -> dg.DagsterInstance:
    (home / "dagster.yaml").write_text(yaml.safe_dump(pooled_config(url, pool)))
    return dg.DagsterInstance.from_config(str(home))


def test_the_deployed_instance_config_uses_the_pooled_storage() -> None:
    deployed = yaml.safe_load((ROOT / "deploy" / "dagster.postgres.yaml").read_text())
    custom = deployed["storage"]["custom"]
    assert (custom["module"], custom["class"]) == (
        "ccat_assets.dagster_face.pooled_storage", "PooledPostgresStorage")


def test_every_call_reuses_the_storages_connections(
        tmp_path: Path, scratch_db: tuple[str, str]) -> None:
    url, database = scratch_db
    with instance_at(tmp_path, url) as instance:
        assert isinstance(instance.get_ref().storage, PooledPostgresStorage)
        store_events(instance, 1)
        instance.get_runs_count()
        first = connections_to(database)
        assert first, "the pooled storage kept no connection"
        assert len(first) <= 3, "more than one idle connection per storage"
        store_events(instance, 20)
        instance.get_runs_count()
        assert connections_to(database) == first
        records = instance.fetch_materializations(dg.AssetKey("pooled"), limit=100).records
        assert len(records) == 21


def test_disposing_the_instance_closes_its_connections(
        tmp_path: Path, scratch_db: tuple[str, str]) -> None:
    """A code server builds an instance per request and disposes it: nothing may stay."""
    url, database = scratch_db
    with instance_at(tmp_path, url) as instance:
        store_events(instance, 3)
        instance.get_runs_count()
        assert connections_to(database)
    assert connections_to(database) == set()


def test_a_connection_the_server_dropped_is_replaced_before_use(
        tmp_path: Path, scratch_db: tuple[str, str]) -> None:
    """As after a PostgreSQL restart: the pooled connections are dead, the calls succeed.
    (A restart takes seconds, so a connection it killed has sat idle longer than the pool's
    ping threshold when next used: the same here.)"""
    url, database = scratch_db
    with instance_at(tmp_path, url) as instance:
        store_events(instance, 2)
        before = connections_to(database)
        admin = sa.create_engine(sa.make_url(PG_URL).set(drivername="postgresql+psycopg2"),
                                 poolclass=sa.pool.NullPool)
        with admin.begin() as conn:
            for pid in before:
                conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        time.sleep(2 * PING_AFTER_IDLE_S)
        store_events(instance, 2)
        assert instance.get_runs_count() == 0
        assert connections_to(database).isdisjoint(before)
        assert len(instance.fetch_materializations(dg.AssetKey("pooled"), limit=10).records) == 4


def test_threads_overflow_into_extra_connections_that_are_closed_after_use(
        tmp_path: Path, scratch_db: tuple[str, str]) -> None:
    """The daemon's threads share one instance: no call waits for a connection (with a
    bounded overflow of 6 this deadlocked: a call holds one connection while it opens a
    second), and at most ``pool.size`` connections per storage stay open once they are
    done."""
    url, database = scratch_db
    with instance_at(tmp_path, url, {"size": 2}) as instance:
        errors: list[BaseException] = []

        def work() -> None:
            try:
                store_events(instance, 10)
                instance.get_runs_count()
            except BaseException as exc:  # reported below, not lost in the thread
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert len(connections_to(database)) <= 2 * 3
        records = instance.fetch_materializations(dg.AssetKey("pooled"), limit=100).records
        assert len(records) == 80


def test_an_unknown_pool_field_is_refused_by_name(
        tmp_path: Path, scratch_db: tuple[str, str]) -> None:
    url, _ = scratch_db
    with pytest.raises(dg.DagsterInvalidConfigError, match="recycle_after"):
        instance_at(tmp_path, url, {"recycle_after": 10})


def test_the_run_workers_own_pooling_leaves_the_pooled_storage_alone(
        tmp_path: Path, scratch_db: tuple[str, str]) -> None:
    """``resources/dagster_storage.py`` pools a plain ``storage: postgres`` instance in the
    run worker; the pooled storage's engines (and their pool size) stay as configured."""
    url, _ = scratch_db
    with instance_at(tmp_path, url, {"size": 3}) as instance:
        engine = instance.run_storage._engine  # noqa: SLF001
        pool_storage_connections(instance)
        assert instance.run_storage._engine is engine  # noqa: SLF001
        assert engine.pool.size() == 3


def test_a_table_found_is_not_asked_about_again_a_missing_one_is(
        tmp_path: Path, scratch_db: tuple[str, str]) -> None:
    """The event-log storage asks the catalog whether a table exists before each check
    event; once found it is remembered, a missing one is asked about every time."""
    url, _ = scratch_db
    with instance_at(tmp_path, url) as instance:
        storage = instance.event_log_storage
        queries: list[str] = []
        sa.event.listen(storage._engine, "before_cursor_execute",  # noqa: SLF001
                        lambda *args: queries.append(args[2]))
        assert storage.has_table("asset_check_executions")
        asked = len(queries)
        assert asked >= 1
        assert storage.has_table("asset_check_executions")
        assert storage.supports_asset_checks
        assert len(queries) == asked
        assert not storage.has_table("no_such_table")
        assert not storage.has_table("no_such_table")
        assert len(queries) == asked + 2


def test_the_schedule_storage_remembers_its_tables_and_built_indexes(
        tmp_path: Path, scratch_db: tuple[str, str]) -> None:
    """Reading a sensor's state asked the catalog for two tables and whether an index was
    built, each time (four statements); found once (here: as the instance started), each
    read is the one statement that reads the state."""
    url, _ = scratch_db
    with instance_at(tmp_path, url) as instance:
        storage = instance.schedule_storage
        assert storage is not None
        queries: list[str] = []
        sa.event.listen(storage._engine, "before_cursor_execute",  # noqa: SLF001
                        lambda *args: queries.append(args[2]))
        for _ in range(3):
            storage.get_instigator_state("origin", "selector")
        assert len(queries) == 3, queries
        assert all("FROM instigators" in query for query in queries), queries
        assert not storage.has_built_index("no_such_migration")
        assert not storage.has_built_index("no_such_migration")
        assert len(queries) == 5  # an index not built is asked about every time


def test_reading_runs_and_storing_events_asks_the_catalog_nothing_once_warm(
        tmp_path: Path, scratch_db: tuple[str, str]) -> None:
    """Dagster asks the catalog for the runs table's columns at every read of runs, and for
    the asset-key columns at every materialization; found once, they are remembered."""
    url, _ = scratch_db
    with instance_at(tmp_path, url) as instance:
        catalog: list[str] = []
        for storage in (instance.run_storage, instance.event_log_storage):
            sa.event.listen(storage._engine, "before_cursor_execute",  # noqa: SLF001
                            lambda *args: catalog.append(args[2]) if "pg_catalog" in args[2]
                            else None)
        for _ in range(2):  # the first round may ask; the second must not
            catalog.clear()
            instance.get_runs(limit=5)
            instance.get_run_records(limit=5)
            store_events(instance, 2)
        assert catalog == []
