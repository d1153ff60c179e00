"""``ccat-wm db``: create and upgrade the ops-db schema (Alembic)."""

from __future__ import annotations

import click

from ccat_assets.opsdb import migrate
from ccat_assets.opsdb.session import get_engine
from ccat_assets.settings import get_settings


@click.group()
def db() -> None:
    """The ops-db schema."""


@db.command()
@click.option("--revision", default="head", show_default=True)
def upgrade(revision: str) -> None:
    """Create or upgrade the ops-db schema to REVISION."""
    url = get_settings().database_url
    migrate.upgrade(url, revision)
    click.echo(f"ops-db at revision {migrate.current_revision(get_engine(url))}")


@db.command()
def current() -> None:
    """Show the schema revision of the ops-db and of the code."""
    engine = get_engine()
    click.echo(f"database: {migrate.current_revision(engine) or 'none'}")
    click.echo(f"code:     {migrate.head_revision()}")
