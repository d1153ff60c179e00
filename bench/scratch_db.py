"""A migrated, empty ops-db for a benchmark, removed afterwards (PostgreSQL: a private schema
on the given server, so benchmarks never touch the shared ``public`` schema); and an empty
PostgreSQL database of its own for a benchmark's Dagster instance."""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from ccat_assets.opsdb.migrate import upgrade
from ccat_assets.opsdb.session import create_engine, normalize_url


@contextmanager
def scratch_database(kind: str, postgres_url: str | None, prefix: str
                     ) -> Iterator[tuple[sa.Engine, str]]:
    """Yield ``(engine, server version)`` of a fresh ops-db of ``kind`` (sqlite|postgresql)."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            upgrade(url)
            engine = create_engine(url)
            try:
                yield engine, sqlite3.sqlite_version
            finally:
                engine.dispose()
        return
    if not postgres_url:
        raise RuntimeError("PostgreSQL: give --postgres-url or set CCAT_TEST_DATABASE_URL")
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_url)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        version = str(connection.execute(sa.text("SHOW server_version")).scalar())
    engine = None
    try:
        url = (sa.make_url(normalize_url(postgres_url))
               .update_query_dict({"options": f"-csearch_path={schema}"})
               .render_as_string(hide_password=False))
        upgrade(url)
        engine = create_engine(url)
        yield engine, version
    finally:
        if engine is not None:
            engine.dispose()
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def scratch_postgres_database(postgres_url: str, prefix: str) -> Iterator[str]:
    """Yield the URL of a new, empty database on the server of ``postgres_url``, dropped
    afterwards even if a process (a daemon, a code server) still holds a connection."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(normalize_url(postgres_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield (sa.make_url(normalize_url(postgres_url)).set(database=name)
               .render_as_string(hide_password=False))
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def add_database_argument(parser: argparse.ArgumentParser) -> None:
    """``--database``: the PostgreSQL server the benchmarks that need one make their scratch
    schema and Dagster database on (``CCAT_TEST_DATABASE_URL``, else the local server)."""
    parser.add_argument("--database", default=os.environ.get(
        "CCAT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="PostgreSQL URL (a schema and a Dagster database of their own are made)")
