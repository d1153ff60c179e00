"""Pooled connections are pinged before use only after they sat idle
(``ccat_assets/opsdb/liveness.py``), on the ops-db's engine against a real PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from ccat_assets.opsdb.liveness import PING_AFTER_IDLE_S
from ccat_assets.opsdb.session import create_engine
from tests.conftest import PG_URL, _postgres_reachable, require_service

pytestmark = pytest.mark.integration


@pytest.fixture
def engine() -> Iterator[sa.Engine]:
    require_service(_postgres_reachable(), f"PostgreSQL at CCAT_TEST_DATABASE_URL={PG_URL!r}")
    engine = create_engine(PG_URL)
    yield engine
    engine.dispose()


def counted_pings(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pings: list[int] = []
    ping = engine.dialect.do_ping

    def counting(dbapi_connection: object) -> bool:
        pings.append(1)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counting)
    return pings


def backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(sa.text("SELECT pg_backend_pid()")) or 0)


def test_a_connection_used_a_moment_ago_is_not_pinged_one_idle_is(
        engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    pings = counted_pings(engine, monkeypatch)
    first = backend_pid(engine)
    for _ in range(20):
        assert backend_pid(engine) == first
    assert pings == []
    time.sleep(2 * PING_AFTER_IDLE_S)
    assert backend_pid(engine) == first
    assert len(pings) == 1


def test_a_connection_the_server_dropped_while_idle_is_replaced(engine: sa.Engine) -> None:
    """As after a PostgreSQL restart, which takes longer than the idle threshold."""
    dropped = backend_pid(engine)
    admin = sa.create_engine(PG_URL, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        assert conn.scalar(sa.text("SELECT pg_terminate_backend(:p)"), {"p": dropped})
    admin.dispose()
    time.sleep(2 * PING_AFTER_IDLE_S)
    assert backend_pid(engine) not in (0, dropped)
