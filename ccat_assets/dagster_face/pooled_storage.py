"""Dagster's PostgreSQL storage with its connections kept open and reused.

Why: dagster-postgres 1.13 opens a new PostgreSQL connection for every storage call
(``NullPool``) outside the webserver. A batch run stores five events per member (planned,
materialization, three check evaluations), each one to three connections; the daemon's
threads poll runs, ticks and the queue the same way. In one ``bench/overhead.py`` run of 200
sub-groups PostgreSQL counted about 1,900 sessions, each a backend process forked,
authenticated and torn down: half the orchestrator's CPU, for no work at all (200 sessions
and half the CPU with this storage: docs/batching.md, "Pooled storage connections").

:class:`PooledPostgresStorage` is Dagster's own ``DagsterPostgresStorage``, configured the
same way (``storage: custom:`` in ``dagster.yaml``, the same ``postgres_db`` or
``postgres_url`` fields), whose run, event-log and schedule storages each keep a small
SQLAlchemy pool per process instead. What Dagster's webserver already does for itself
(``optimize_for_webserver``), done for the daemon, the code server and every run worker:

- ``pool.size`` connections stay open per storage and process (a run worker's calls come
  one after another and use one; the daemon's threads use a few at once). Beyond them a
  call opens a short-lived extra connection, as Dagster's own storage does for every call,
  and never waits for one: a storage call can open a second connection while it holds a
  first (an event and its index), so a bounded pool deadlocks under enough threads (the
  test with eight threads did). ``pool.max_overflow`` bounds the extras only if set;
- a connection that sat idle is checked before use (``ccat_assets/opsdb/liveness.py``), so
  a restarted PostgreSQL costs a reconnect, not a failed call;
- connections are closed when the instance is disposed (a code server builds an instance
  per request and disposes it) and recycled after ``pool.recycle_seconds``;
- the tables a storage found are remembered, and a check evaluation's execution row is
  written in one statement (``check_execution_rows.py``).

The webserver still replaces the engines with its own (``optimize_for_webserver``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from dagster import Field, IntSource
from dagster._config.config_schema import UserConfigSchema
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.config import pg_config
from dagster._core.storage.event_log import SqlEventLogStorageTable
from dagster._serdes import ConfigurableClassData
from dagster._time import datetime_from_timestamp
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from dagster_postgres.storage import DagsterPostgresStorage
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)

from ccat_assets.dagster_face.check_execution_rows import record_check_execution
from ccat_assets.dagster_face.event_text import EventText
from ccat_assets.opsdb.liveness import ping_when_idle

#: Connections kept open per storage (run, event log, schedule) in each process.
DEFAULT_POOL_SIZE = 4
#: Extra connections a storage may open at once beyond the pool (closed after use); -1: no
#: limit, so that no call ever waits for a connection (see the module's docstring).
DEFAULT_MAX_OVERFLOW = -1
#: A connection older than this is replaced at its next use (PostgreSQL and proxies drop
#: idle connections after a while).
DEFAULT_RECYCLE_SECONDS = 3600


def pool_config() -> UserConfigSchema:
    """The ``pool`` block of the storage's config; every field has a default."""
    return {
        "size": Field(IntSource, is_required=False, default_value=DEFAULT_POOL_SIZE),
        "max_overflow": Field(IntSource, is_required=False,
                              default_value=DEFAULT_MAX_OVERFLOW),
        "recycle_seconds": Field(IntSource, is_required=False,
                                 default_value=DEFAULT_RECYCLE_SECONDS),
    }


def pooled_engine(storage: Any, pool: Mapping[str, int]) -> sa.Engine:
    """An engine like the storage's own (same URL, options and token provider, autocommit)
    that keeps ``pool['size']`` connections open and pings one before use if it sat idle."""
    kwargs: dict[str, Any] = {
        "isolation_level": "AUTOCOMMIT",
        "pool_size": pool.get("size", DEFAULT_POOL_SIZE),
        "max_overflow": pool.get("max_overflow", DEFAULT_MAX_OVERFLOW),
        "pool_recycle": pool.get("recycle_seconds", DEFAULT_RECYCLE_SECONDS),
    }
    options = storage._engine.url.query.get("options")
    if options:
        kwargs["connect_args"] = {"options": options}
    return ping_when_idle(
        create_pg_engine(storage.postgres_url, storage._token_provider, **kwargs))


class _Pooled:
    """Swaps a dagster-postgres storage's ``NullPool`` engine for a pooled one and closes
    the pool's connections when the storage is disposed."""

    _engine: sa.Engine
    #: Read by ``resources/dagster_storage.py``, which pools a plain ``storage: postgres``
    #: in the run worker and must leave these alone (a lower layer: it cannot import this).
    pooled_connections = True

    def use_pool(self, pool: Mapping[str, int]) -> None:
        unpooled = self._engine
        self._engine = pooled_engine(self, pool)
        unpooled.dispose()

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]
        self._engine.dispose()




class _RemembersWhatItFound:
    """Remembers the tables, columns and migrated indexes a storage found, instead of asking
    the server's catalog again at every call.

    Why: so that an instance not yet migrated fails clearly, Dagster asks the catalog whether
    a table or column exists before every asset check event (``supports_asset_checks``) and
    every materialization (the asset-key columns), at every read of runs (the run-stats
    columns) and twice in every read and write of a sensor's state (the instigators and
    secondary-index tables): three to six catalog queries per batch member, and several in
    every sensor tick (every 5 s at most: Dagster's sensor loop) of the daemon and the code
    server (py-spy, docs/batching.md). A table or column found stays found in a running
    process (nothing here drops Dagster's), and so does an index migration found completed;
    what was not found is asked about again, so a migration is seen at once.
    """

    def _found(self, what: str, ask: Callable[[], bool]) -> bool:
        found = self.__dict__.setdefault("_what_was_found", set())
        if what in found:
            return True
        if ask():
            found.add(what)
            return True
        return False


class PooledPostgresRunStorage(_RemembersWhatItFound, _Pooled, PostgresRunStorage):
    """Dagster's PostgreSQL run storage with pooled connections, which remembers the columns
    and tables it found (it asks for the runs table's columns at every read of runs)."""

    def has_run_stats_index_cols(self) -> bool:
        return self._found("columns runs.start_time, end_time", super().has_run_stats_index_cols)

    def has_backfill_id_column(self) -> bool:
        return self._found("column runs.backfill_id", super().has_backfill_id_column)

    def has_bulk_actions_selector_cols(self) -> bool:
        return self._found("column bulk_actions.selector_id",
                           super().has_bulk_actions_selector_cols)

    def has_bulk_action_job_name_column(self) -> bool:
        return self._found("column bulk_actions.job_name",
                           super().has_bulk_action_job_name_column)

    def has_backfill_tags_table(self) -> bool:
        return self._found("table backfill_tags", super().has_backfill_tags_table)


class PooledPostgresEventLogStorage(_RemembersWhatItFound, _Pooled, PostgresEventLogStorage):
    """Dagster's PostgreSQL event-log storage with pooled connections, which remembers the
    tables it found, serializes an event once for all the rows that store it, sends no
    ``NOTIFY`` and records a check evaluation's execution row in one statement."""

    def has_table(self, table_name: str) -> bool:
        ask = super().has_table
        return self._found(f"table {table_name}", lambda: ask(table_name))

    def _has_asset_key_col_on_connection(self, conn: sa.Connection, column_name: str) -> bool:
        ask = super()._has_asset_key_col_on_connection
        return self._found(f"column asset_keys.{column_name}", lambda: ask(conn, column_name))

    @functools.cached_property
    def _text(self) -> EventText:
        return EventText()

    def store_event(self, event: EventLogEntry) -> None:
        """Dagster's ``PostgresEventLogStorage.store_event`` without its ``NOTIFY``.

        Why: Dagster 1.13 watches the event log by polling; it keeps the ``NOTIFY`` after
        every event only for older Dagster processes that listened (its own comment says so),
        and every process here runs the same Dagster. That was one round trip more for each
        of a batch member's events."""
        statement = self.prepare_insert_event(event).returning(SqlEventLogStorageTable.c.id)
        with self._connect() as conn:
            event_id = int(conn.execute(statement).scalar_one())
        dagster_event = event.dagster_event
        if dagster_event is None:
            return
        if dagster_event.event_type in ASSET_EVENTS and dagster_event.asset_key:
            with self.index_transaction() as conn:
                self._store_asset_event_tags(conn, [event], [event_id])
                self._store_asset_event(conn, event, event_id)
        if dagster_event.event_type in ASSET_CHECK_EVENTS:
            self.store_asset_check_event(event, event_id)

    def _event_to_row(self, event: EventLogEntry) -> dict[str, Any]:
        """Dagster's row of the event, whose text the other rows of the event then reuse."""
        row = super()._event_to_row(event)
        self._text.remember(event, row["event"])
        return row

    def _get_asset_entry_values(self, event: EventLogEntry, event_id: int,
                                has_asset_key_index_cols: bool) -> dict[str, Any]:
        """Dagster's values of the asset's row; a materialization's record is spliced from
        the event's text instead of serialized again (:mod:`.event_text`)."""
        if event.dagster_event is None or not event.dagster_event.is_step_materialization:
            return super()._get_asset_entry_values(event, event_id, has_asset_key_index_cols)
        values: dict[str, Any] = {"last_materialization": self._text.of_record(event, event_id),
                                  "last_run_id": event.run_id}
        if has_asset_key_index_cols:
            values["last_materialization_timestamp"] = datetime_from_timestamp(event.timestamp)
        return values

    def _update_asset_check_evaluation(self, event: EventLogEntry, event_id: int | None
                                       ) -> None:
        """Dagster's row of a check evaluation in a run, in one round trip
        (:func:`~ccat_assets.dagster_face.check_execution_rows.record_check_execution`)."""
        with self.index_connection() as conn:
            record_check_execution(conn, event, event_id, self._event_insert_timestamp(event),
                                   event_text=self._text.of(event))


class PooledPostgresScheduleStorage(_RemembersWhatItFound, _Pooled, PostgresScheduleStorage):
    """Dagster's PostgreSQL schedule storage with pooled connections, which remembers the
    tables and the index migrations it found."""

    def _has_instigators_table(self, conn: sa.Connection) -> bool:
        ask = super()._has_instigators_table
        return self._found("table instigators", lambda: ask(conn))

    def _has_asset_daemon_asset_evaluations_table(self, conn: sa.Connection) -> bool:
        ask = super()._has_asset_daemon_asset_evaluations_table
        return self._found("table asset_daemon_asset_evaluations", lambda: ask(conn))

    def has_secondary_index_table(self) -> bool:
        return self._found("table secondary_indexes", super().has_secondary_index_table)

    def has_built_index(self, migration_name: str) -> bool:
        ask = super().has_built_index
        return self._found(f"index {migration_name}", lambda: ask(migration_name))


class PooledPostgresStorage(DagsterPostgresStorage):
    """``DagsterPostgresStorage`` whose three storages keep their connections open (see the
    module's docstring); configured as ``storage: custom:`` with Dagster's ``postgres``
    fields and an optional ``pool`` block."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True,
                 inst_data: ConfigurableClassData | None = None,
                 token_provider: Any = None, pool: Mapping[str, int] | None = None):
        self.postgres_url = postgres_url
        self.should_autocreate_tables = should_autocreate_tables
        self._inst_data = inst_data
        self.pool = dict(pool or {})
        self._run_storage = PooledPostgresRunStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider)
        self._event_log_storage = PooledPostgresEventLogStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider)
        self._schedule_storage = PooledPostgresScheduleStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider)
        for storage in (self._run_storage, self._event_log_storage, self._schedule_storage):
            storage.use_pool(self.pool)
        super(DagsterPostgresStorage, self).__init__()

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        return {**pg_config(), "pool": Field(pool_config(), is_required=False)}

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledPostgresStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
            pool=config_value.get("pool") or {},
        )
