"""A run worker's Dagster storage keeps its PostgreSQL connection between events.

dagster-postgres connects anew for every storage call unless told otherwise
(``resources/dagster_storage.py``). Integration: a Dagster instance on a scratch PostgreSQL
database; the server's own view (``pg_stat_activity``) says which connections it holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from bench.scratch_db import scratch_postgres_database
from resources.dagster_storage import pool_storage_connections
from tests.conftest import PG_URL, _postgres_reachable, require_service

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_instance(tmp_path: Path) -> Iterator[tuple[dg.DagsterInstance, str]]:
    require_service(_postgres_reachable(), f"PostgreSQL at CCAT_TEST_DATABASE_URL={PG_URL!r}")
    with scratch_postgres_database(PG_URL, "storage_pool") as url:
        psycopg2_url = sa.make_url(url).set(drivername="postgresql+psycopg2")
        (tmp_path / "dagster.yaml").write_text(yaml.safe_dump({"storage": {"postgres": {
            "postgres_url": psycopg2_url.render_as_string(hide_password=False)}}}))
        with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
            yield instance, sa.make_url(url).database or ""


def connections_to(database: str) -> set[int]:
    """Backend pids connected to ``database``, seen from a connection to another database."""
    engine = sa.create_engine(sa.make_url(PG_URL).set(drivername="postgresql+psycopg2"),
                              poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        return set(conn.scalars(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :d"),
                                {"d": database}))


def store_events(instance: dg.DagsterInstance, n: int) -> None:
    for i in range(n):
        instance.report_runless_asset_event(dg.AssetMaterialization("pooled", partition=str(i)))


def test_without_pooling_every_call_connects_anew(
        pg_instance: tuple[dg.DagsterInstance, str]) -> None:
    """The behaviour the pooling replaces: nothing stays connected between calls."""
    instance, database = pg_instance
    store_events(instance, 3)
    assert connections_to(database) == set()


def test_pooled_storage_serves_every_event_on_one_connection(
        pg_instance: tuple[dg.DagsterInstance, str]) -> None:
    instance, database = pg_instance
    pool_storage_connections(instance)
    pool_storage_connections(instance)  # a second resource set-up in the same run: no change
    store_events(instance, 1)
    first = connections_to(database)
    assert first, "the pooled storage kept no connection"
    store_events(instance, 20)
    assert connections_to(database) == first
    assert len(instance.fetch_materializations(dg.AssetKey("pooled"), limit=100).records) == 21


def test_pooling_leaves_a_sqlite_instance_working() -> None:
    with dg.instance_for_test() as instance:
        pool_storage_connections(instance)
        store_events(instance, 2)
        assert len(instance.fetch_materializations(dg.AssetKey("pooled"), limit=10).records) == 2
