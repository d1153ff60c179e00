"""What a rule may name: the columns of each reachable table and the kind of value each takes.

The kind decides which operators and values make sense (``like`` on text, ``gt`` on numbers,
text and timestamps, enum members by name), so a bad rule is caught before any SQL runs.
Column names are the database names (``metadata``, as in the CCAT ops-db API payloads); the
Python attribute name is accepted too where it differs (``meta``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import sqlalchemy as sa

from ccat_assets.grouping.joins import JOIN_GRAPH

STRING, NUMBER, BOOL, DATETIME, ENUM, JSON = "string", "number", "bool", "datetime", "enum", "json"


@dataclass(frozen=True)
class ColumnInfo:
    table: str
    name: str
    kind: str
    enum_class: type[enum.Enum] | None = None

    @property
    def label(self) -> str:
        return f"{self.table}.{self.name}"


def _kind(type_: sa.types.TypeEngine[object]) -> str:
    if isinstance(type_, sa.types.TypeDecorator):
        type_ = type_.impl_instance
    if isinstance(type_, sa.Enum):
        return ENUM
    if isinstance(type_, sa.JSON):
        return JSON
    if isinstance(type_, sa.Boolean):
        return BOOL
    if isinstance(type_, sa.DateTime | sa.Date):
        return DATETIME
    if isinstance(type_, sa.Integer | sa.Numeric | sa.Float):
        return NUMBER
    if isinstance(type_, sa.String):
        return STRING
    raise TypeError(f"no rule kind for column type {type_!r}")


def _columns(table_name: str) -> dict[str, ColumnInfo]:
    model = JOIN_GRAPH[table_name].model
    found: dict[str, ColumnInfo] = {}
    for attr, column in sa.inspect(model).columns.items():
        enum_class = getattr(column.type, "enum_class", None)
        info = ColumnInfo(table_name, column.name, _kind(column.type), enum_class)
        found[column.name] = info
        found.setdefault(attr, info)
    return found


COLUMNS: dict[str, dict[str, ColumnInfo]] = {name: _columns(name) for name in JOIN_GRAPH}


def column_names(table: str) -> list[str]:
    """The database column names of ``table`` (aliases left out), for messages."""
    return sorted({info.name for info in COLUMNS[table].values()})


def json_columns() -> list[str]:
    return sorted({info.label for cols in COLUMNS.values() for info in cols.values()
                   if info.kind == JSON})


def sql_column(info: ColumnInfo) -> sa.ColumnElement[object]:
    return JOIN_GRAPH[info.table].table.c[info.name]
