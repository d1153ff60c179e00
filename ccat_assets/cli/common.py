"""Helpers shared by the CLI commands: sessions, errors, JSON output."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

import click
from sqlalchemy.orm import Session

from ccat_assets.opsdb.migrate import SchemaNotCurrent, require_current
from ccat_assets.opsdb.session import get_engine, session_scope
from ccat_assets.specs.specfile import SpecError

EXIT_INVALID = 2


@contextlib.contextmanager
def opsdb_session() -> Iterator[Session]:
    """A transaction on the configured ops-db, refusing an outdated schema."""
    try:
        require_current(get_engine())
    except SchemaNotCurrent as exc:
        raise click.ClickException(str(exc)) from exc
    with session_scope() as session:
        yield session


def fail_with_problems(exc: SpecError) -> None:
    for problem in exc.problems:
        click.echo(f"error: {problem}", err=True)
    click.echo(f"{len(exc.problems)} problem(s); nothing was written.", err=True)
    sys.exit(EXIT_INVALID)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))
