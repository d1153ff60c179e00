"""Fixtures of the deployment tests: a Dagster instance on PostgreSQL per deploy/.

``postgres_dagster_home`` is meant for reuse: any test that needs a DAGSTER_HOME can take it
instead of a SQLite one and runs against the production storage configuration.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_YAML = ROOT / "deploy" / "dagster.postgres.yaml"


def _admin_engine() -> sa.Engine | None:
    """An AUTOCOMMIT engine on the server of CCAT_TEST_DATABASE_URL, or None if unreachable."""
    url = os.environ.get("CCAT_TEST_DATABASE_URL", "")
    if not url:
        return None
    parsed = sa.make_url(url).set(drivername="postgresql+psycopg2")
    engine = sa.create_engine(parsed, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.OperationalError:
        engine.dispose()
        return None
    return engine


@pytest.fixture
def postgres_dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A DAGSTER_HOME whose dagster.yaml is deploy/dagster.postgres.yaml, on a new database.

    The database ``ccat_dagster_test_<hex>`` is created on the CCAT_TEST_DATABASE_URL server
    and dropped afterwards; DAGSTER_HOME and the DAGSTER_PG_* variables that file reads are
    set for this test (and inherited by any process it starts).
    """
    admin = _admin_engine()
    require_service(admin is not None, "PostgreSQL at CCAT_TEST_DATABASE_URL")
    assert admin is not None
    name = f"ccat_dagster_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(POSTGRES_YAML, home / "dagster.yaml")
    url = admin.url
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_USERNAME", url.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "")
    monkeypatch.setenv("DAGSTER_PG_HOST", url.host or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_DB", name)
    try:
        yield home
    finally:
        with admin.connect() as conn:
            # FORCE: a daemon or code server a test left running must not keep it alive.
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
