"""Shared fixtures: ops-db on SQLite and PostgreSQL, isolated settings, service checks.

Integration tests skip on a laptop without the services, but under
``CCAT_REQUIRE_INTEGRATION=1`` (CI) a missing service is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ccat_assets.opsdb import migrate
from ccat_assets.opsdb.session import create_engine, dispose_engines, normalize_url
from ccat_assets.settings import get_settings
from tests.demokit import DemoState, build_demo_state

REQUIRE_INTEGRATION = os.environ.get("CCAT_REQUIRE_INTEGRATION") == "1"
PG_URL = os.environ.get("CCAT_TEST_DATABASE_URL", "")


def require_service(available: bool, what: str) -> None:
    """Skip without the service, or fail when CI requires integration tests."""
    if available:
        return
    if REQUIRE_INTEGRATION:
        pytest.fail(f"{what} is required (CCAT_REQUIRE_INTEGRATION=1) but not available")
    pytest.skip(f"{what} not available")


def postgres_schema_url(base_url: str) -> Iterator[str]:
    """A fresh schema on the test PostgreSQL, dropped afterwards; tests never touch public."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base_url else "?"
    try:
        yield f"{normalize_url(base_url)}{sep}options=-csearch_path%3D{schema}"
    finally:
        dispose_engines()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def _postgres_reachable() -> bool:
    if not PG_URL:
        return False
    try:
        engine = create_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, migrated ops-db on each database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'opsdb.sqlite'}"
        migrate.upgrade(url)
        yield url
        dispose_engines()
        return
    require_service(_postgres_reachable(), f"PostgreSQL at CCAT_TEST_DATABASE_URL={PG_URL!r}")
    for url in postgres_schema_url(PG_URL):
        migrate.upgrade(url)
        yield url


@pytest.fixture
def ccat_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings pointing at ``db_url`` and a private home folder; restored afterwards."""
    home = tmp_path / "ccat-home"
    monkeypatch.setenv("CCAT_OPS_DB_URL", db_url)
    monkeypatch.setenv("CCAT_WORKFLOW_MANAGER_HOME", str(home))
    monkeypatch.setenv("CCAT_WORKFLOW_MANAGER_DAGSTER_WEBSERVER_URL", "http://127.0.0.1:9")
    get_settings.cache_clear()
    dispose_engines()
    yield home
    get_settings.cache_clear()
    dispose_engines()


@pytest.fixture(scope="session")
def demo_state(tmp_path_factory: pytest.TempPathFactory) -> DemoState:
    """``make demo``'s state, built once per session for every test that asks for it (about
    100 s); a test works on a copy of it (``tests.demokit.copy_demo_state``)."""
    return build_demo_state(tmp_path_factory.mktemp("demo-state") / "demo")
