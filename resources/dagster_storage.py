"""Pooled connections for the Dagster instance's storage inside a run worker.

dagster-postgres opens a new PostgreSQL connection for every storage call (``NullPool``), so
that processes holding many instances do not accumulate idle connections. A run worker holds
one instance for its whole run and stores several events per sub-group (the planned event, the
materialization, one evaluation per asset check, log lines): about fifteen connections per
batch member, each a backend process started and torn down on the server. Dagster's own
webserver avoids this with ``optimize_for_webserver``, which gives each storage one pooled
connection; a run worker takes the same for the length of its run. Storages other than
PostgreSQL (SQLite in development) ignore the call. An instance configured with
:class:`~ccat_assets.dagster_face.pooled_storage.PooledPostgresStorage` (one host,
``deploy/dagster.postgres.yaml``) pools in every process from its start and is left as it is;
this covers Dagster's plain ``storage: postgres`` (the Helm chart's instance).
"""

from __future__ import annotations

import dagster as dg

#: No statement timeout: a run worker's writes must not be cut off as a web request's reads
#: may be (PostgreSQL's default, which dagster-postgres otherwise keeps).
NO_STATEMENT_TIMEOUT_MS = 0
#: Connections are replaced after an hour, so a long run does not hold one the server or a
#: proxy has since dropped.
POOL_RECYCLE_S = 3600
#: Connections beyond the pooled one when threads of the worker store at the same time; they
#: are closed when returned.
MAX_OVERFLOW = 5


def pool_storage_connections(instance: dg.DagsterInstance | None) -> None:
    """Give ``instance``'s storages a pooled connection each, once per process."""
    if instance is None or getattr(instance, "_ccat_storage_pooled", False):
        return
    if getattr(instance.run_storage, "pooled_connections", False):
        return  # PooledPostgresStorage's: pooled since the process started
    instance.optimize_for_webserver(statement_timeout=NO_STATEMENT_TIMEOUT_MS,
                                    pool_recycle=POOL_RECYCLE_S, max_overflow=MAX_OVERFLOW)
    instance._ccat_storage_pooled = True  # type: ignore[attr-defined]  # noqa: SLF001
