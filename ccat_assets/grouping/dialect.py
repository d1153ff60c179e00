"""The few SQL constructs that differ between PostgreSQL and SQLite, in one place.

Everything else the compiler emits is portable SQLAlchemy; JSON paths live in ``jsonpath``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ccat_assets.grouping.values import LIKE_ESCAPE

DIALECTS = ("postgresql", "sqlite")


def check_dialect(name: str) -> str:
    if name not in DIALECTS:
        raise ValueError(f"grouping supports {' and '.join(DIALECTS)}, not {name!r}")
    return name


def like_to_glob(pattern: str) -> str:
    """A LIKE pattern (``%``, ``_``, ``\\`` escape) as an SQLite GLOB pattern.

    SQLite's LIKE ignores ASCII case and has no default escape; PostgreSQL's LIKE is
    case-sensitive with ``\\`` as escape. GLOB is case-sensitive, so translating the pattern
    gives the same answer on both databases.
    """
    out: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char == LIKE_ESCAPE:
            char = next(chars, LIKE_ESCAPE)
            out.append(f"[{char}]" if char in "*?[" else char)
        elif char == "%":
            out.append("*")
        elif char == "_":
            out.append("?")
        else:
            out.append(f"[{char}]" if char in "*?[" else char)
    return "".join(out)


def like(expr: sa.ColumnElement[object], pattern: str, dialect: str) -> sa.ColumnElement[bool]:
    if dialect == "postgresql":
        return expr.like(pattern, escape=LIKE_ESCAPE)
    glob = sa.bindparam(None, like_to_glob(pattern), type_=sa.Text)
    return expr.op("GLOB", is_comparison=True)(glob)


def ordered(expr: sa.ColumnElement[object], dialect: str) -> sa.ColumnElement[object]:
    """Text ordered by code point on both (SQLite's BINARY; PostgreSQL's "C" collation)."""
    return expr.collate("C") if dialect == "postgresql" else expr


def id_in(column: sa.ColumnElement[int], ids: Sequence[int],
          dialect: str) -> sa.ColumnElement[bool]:
    """``column IN ids`` as ONE bound parameter, whatever the number of ids.

    An array on PostgreSQL, a JSON array unnested by ``json_each`` on SQLite: no parameter
    limits, no chunking, and the statement text (and its plan cache entry) never varies.
    """
    if dialect == "postgresql":
        return column == sa.any_(sa.bindparam(None, list(ids),
                                              type_=postgresql.ARRAY(sa.Integer)))
    listed = sa.func.json_each(sa.bindparam(None, json.dumps(list(ids)), type_=sa.Text))
    return column.in_(sa.select(listed.table_valued("value").c.value))


def utc_date(expr: sa.ColumnElement[object], dialect: str) -> sa.ColumnElement[str]:
    """The UTC calendar day of a timestamp as 'YYYY-MM-DD'.

    PostgreSQL keeps timestamptz (converted explicitly, whatever the session time zone);
    SQLite keeps UTC text, as written by ``UTCDateTime``.
    """
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", expr), "YYYY-MM-DD", type_=sa.Text)
    return sa.func.strftime("%Y-%m-%d", expr, type_=sa.Text)


def collect(expr: sa.ColumnElement[object], dialect: str) -> sa.ColumnElement[object]:
    """All values of a group in one cell; decoded by :func:`decode_collected`."""
    if dialect == "postgresql":
        # No result type: psycopg already gives a list of ints / strs, and SQLAlchemy's
        # per-item ARRAY processing would cost more than the query at 100k packages.
        return sa.func.array_agg(expr, type_=sa.types.NullType())
    return sa.func.json_group_array(expr, type_=sa.Text)


def decode_collected(cell: object) -> list[object]:
    if cell is None:
        return []
    if isinstance(cell, str):
        return json.loads(cell)  # type: ignore[no-any-return]
    return list(cell)  # type: ignore[call-overload]
