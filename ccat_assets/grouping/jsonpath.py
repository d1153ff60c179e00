"""JSON paths into JSON columns, the same on PostgreSQL (JSONB) and SQLite (JSON1).

A path is dot-separated keys of ``[A-Za-z0-9_-]`` with optional ``[n]`` array indexes, e.g.
``observation.frequency_ghz`` or ``tags[0]``. The narrow alphabet keeps every path printable
and unambiguous in both databases; the path still travels as a bound parameter.

A comparison reads the value as one JSON type and sees NULL when the stored value has another
type (``jsonb_typeof`` / ``json_type`` guards), so ``"461.04"`` (a string) never compares as
a number, and SQLite's ordering of TEXT above all numbers can never leak into ``gt``.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

Segment = str | int

MAX_PATH_LENGTH = 256
MAX_SEGMENTS = 16
_KEY = r"[A-Za-z0-9_-]+"
_PART = re.compile(rf"({_KEY})((?:\[\d{{1,6}}\])*)")
_INDEX = re.compile(r"\[(\d+)\]")

#: The JSON types a comparison can read a value as; a bool is compared as 'true' / 'false'.
NUMBER, STRING, BOOL = "number", "string", "bool"


def parse_json_path(path: object) -> tuple[tuple[Segment, ...] | None, str | None]:
    """``(segments, None)`` for a good path, ``(None, reason)`` otherwise."""
    if not isinstance(path, str) or not path:
        return None, "must be a non-empty string such as 'observation.frequency_ghz'"
    if len(path) > MAX_PATH_LENGTH:
        return None, f"is longer than {MAX_PATH_LENGTH} characters"
    segments: list[Segment] = []
    for part in path.split("."):
        match = _PART.fullmatch(part)
        if match is None:
            return None, (f"segment {part[:40]!r} is not a key of letters, digits, '_' or '-' "
                          "with optional [n] indexes (e.g. 'observation.frequency_ghz', "
                          "'tags[0]')")
        segments.append(match.group(1))
        segments.extend(int(i) for i in _INDEX.findall(match.group(2)))
    if len(segments) > MAX_SEGMENTS:
        return None, f"has more than {MAX_SEGMENTS} segments"
    return tuple(segments), None


class _Access:
    """The raw node at a path and its JSON type name, per dialect."""

    def __init__(self, column: sa.ColumnElement[object], segments: tuple[Segment, ...],
                 dialect: str) -> None:
        self.dialect = dialect
        if dialect == "postgresql":
            path = sa.bindparam(None, [str(s) for s in segments],
                                type_=postgresql.ARRAY(sa.Text))
            self.node = column.op("#>", return_type=postgresql.JSONB)(path)
            self.text = column.op("#>>", return_type=sa.Text)(path)
            self.type_name = sa.func.jsonb_typeof(self.node, type_=sa.Text)
        else:
            text_path = "$" + "".join(f"[{s}]" if isinstance(s, int) else f'."{s}"'
                                      for s in segments)
            path = sa.bindparam(None, text_path, type_=sa.Text)
            self.node = sa.func.json_extract(column, path)
            self.text = self.node
            self.type_name = sa.func.json_type(column, path, type_=sa.Text)

    def as_kind(self, kind: str) -> sa.ColumnElement[object]:
        if self.dialect == "postgresql":
            if kind == NUMBER:
                return sa.case((self.type_name == "number", sa.cast(self.text, sa.Float)))
            if kind == STRING:
                return sa.case((self.type_name == "string", self.text))
            return sa.case((self.type_name == "boolean", self.text))
        if kind == NUMBER:
            return sa.case((self.type_name.in_(["integer", "real"]),
                            sa.type_coerce(self.node, sa.Float)))
        if kind == STRING:
            return sa.case((self.type_name == "text", sa.type_coerce(self.node, sa.Text)))
        return sa.case((self.type_name.in_(["true", "false"]), self.type_name))


def json_value(column: sa.ColumnElement[object], segments: tuple[Segment, ...], kind: str,
               dialect: str) -> sa.ColumnElement[object]:
    """The value at the path as SQL of ``kind``; NULL when missing or of another JSON type."""
    return _Access(column, segments, dialect).as_kind(kind)


def json_is_null(column: sa.ColumnElement[object], segments: tuple[Segment, ...],
                 dialect: str) -> sa.ColumnElement[bool]:
    """True when the path is missing or holds JSON null (never NULL itself)."""
    access = _Access(column, segments, dialect)
    return sa.func.coalesce(access.type_name, "null") == "null"


def json_document(column: sa.ColumnElement[object], segments: tuple[Segment, ...],
                  dialect: str) -> sa.ColumnElement[str]:
    """The value at the path as JSON text (NULL or 'null' when absent), to group by."""
    access = _Access(column, segments, dialect)
    if dialect == "postgresql":
        return sa.cast(access.node, sa.Text)
    # json_extract gives 1/0 for true/false: keep the JSON spelling so both databases agree.
    return sa.case((access.type_name.in_(["true", "false"]), access.type_name),
                   else_=sa.func.json_quote(access.node, type_=sa.Text))
