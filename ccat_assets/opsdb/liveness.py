"""Pooled connections are pinged before use only when they sat idle.

Why: SQLAlchemy's ``pool_pre_ping`` pings a connection at every checkout, a round trip to
PostgreSQL before every transaction of the ops-db and every call of Dagster's storage. Those
come in bursts (a batch member's five events, a daemon loop's reads, a sensor tick's
queries), milliseconds apart, each ping one more round trip and one more statement for the
server to parse. (A profile that also counts waiting put the pings at 5% of a run worker's
samples and 9% of the daemon's; most of that was the round trip's wait, not CPU:
docs/batching.md.)

A connection that was checked in less than :data:`PING_AFTER_IDLE_S` ago is handed out
without a ping. What the ping is for still holds: a restarted PostgreSQL kills every
connection, and one that was last used before the restart and is next used after it has sat
idle at least as long as the server was down (seconds: ``pg_ctlcluster restart`` takes about
2.3 s here), so it is pinged and replaced. A use during the restart fails with or without a
ping. What is no longer caught is a single backend killed (``pg_terminate_backend``) within
that fraction of a second after its last use: its next call fails once, and the pool then
replaces it.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

#: A connection idle for less than this is handed out without a ping.
PING_AFTER_IDLE_S = 0.25
_CHECKED_IN_AT = "ccat_checked_in_at"


def ping_when_idle(engine: sa.Engine, after_idle_s: float = PING_AFTER_IDLE_S) -> sa.Engine:
    """Ping ``engine``'s pooled connections at checkout only after ``after_idle_s`` idle;
    one that fails the ping is replaced (the engine must not use ``pool_pre_ping``)."""
    dialect = engine.dialect

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_CHECKED_IN_AT] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN_AT)
        if since is None or time.monotonic() - since < after_idle_s:
            return  # new, or used a moment ago
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                # The pool replaces the connection and checks out again.
                raise sa.exc.DisconnectionError(str(error)) from error
            raise

    sa.event.listen(engine, "checkin", checked_in)
    sa.event.listen(engine, "checkout", checked_out)
    return engine
