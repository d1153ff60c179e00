"""Rules and group_by to ONE SQL statement, with bound parameters only.

The statement LEFT OUTER JOINs from RawDataPackage to the tables the rules and dimensions
need (each once), filters, and aggregates per sub-group: the dimension values, the package
ids and checksums, and the newest ``updated_at``. Nothing is filtered in Python.

Three-valued logic is folded into two: ``{"not": r}`` is ``r IS NOT TRUE``, so it selects
exactly the packages ``r`` does not select, including those where ``r`` compared a missing
value. Comparisons themselves keep SQL's meaning: ``neq`` and ``not_in`` need a value to be
present (as in the seed), ``not`` does not.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import sqlalchemy as sa

from ccat_assets.grouping.columns import BOOL, NUMBER, STRING, sql_column
from ccat_assets.grouping.dialect import check_dialect, collect, id_in, like, ordered, utc_date
from ccat_assets.grouping.dimensions import Dimension, require_group_by
from ccat_assets.grouping.joins import JOIN_GRAPH, ROOT, join_from_root
from ccat_assets.grouping.jsonpath import json_document, json_is_null, json_value
from ccat_assets.grouping.rules import (
    AllOf,
    AnyOf,
    Condition,
    Node,
    Not,
    referenced_tables,
    require_filter_rules,
)
from ccat_assets.grouping.values import ORDER_OPERATORS

#: Labels of the statement's columns after the dimensions ``dim_0``, ``dim_1``, ...
PACKAGE_IDS, PACKAGE_CHECKSUMS, NEWEST_INPUT_AT = (
    "package_ids", "package_checksums", "newest_input_at")


def condition_sql(cond: Condition, dialect: str) -> sa.ColumnElement[bool]:
    column = sql_column(cond.column)
    value = cond.value
    if cond.json_path is not None:
        if cond.operator == "is_null":
            found = json_is_null(column, cond.json_path, dialect)
            return found if value else sa.not_(found)
        target = json_value(column, cond.json_path, cond.kind, dialect)
        if cond.kind == BOOL:  # both databases spell JSON booleans 'true' / 'false' here
            value = (tuple(_json_bool(v) for v in value) if isinstance(value, tuple)
                     else _json_bool(value))
    else:
        if cond.operator == "is_null":
            return column.is_(None) if value else column.is_not(None)
        target = column
    if cond.kind == STRING and cond.operator in ORDER_OPERATORS:
        target = ordered(target, dialect)
    if cond.kind == NUMBER:
        value = _number_binds(value, json=cond.json_path is not None)
    match cond.operator:
        case "eq":
            return target == value
        case "neq":
            return target != value
        case "in":
            return target.in_(list(value))
        case "not_in":
            return target.not_in(list(value))
        case "gt":
            return target > value
        case "gte":
            return target >= value
        case "lt":
            return target < value
        case "lte":
            return target <= value
        case "between":
            return target.between(value[0], value[1])
        case "like":
            return like(target, value, dialect)
    raise AssertionError(cond.operator)


def _number_binds(value: object, *, json: bool) -> object:
    """Numbers bound with a type wide enough for the value.

    Typed after an INTEGER column, ``3000000000`` would fail PostgreSQL's cast; BIGINT fits
    every accepted integer and keeps the index usable. Values are within 64 bits (checked).
    """
    if isinstance(value, tuple):
        return tuple(_number_binds(v, json=json) for v in value)
    assert isinstance(value, int | float)
    type_ = sa.Float() if json or isinstance(value, float) else sa.BigInteger()
    return sa.bindparam(None, value, type_=type_)


def _json_bool(value: object) -> str:
    return "true" if value else "false"


def node_sql(node: Node, dialect: str) -> sa.ColumnElement[bool]:
    if isinstance(node, Condition):
        return condition_sql(node, dialect)
    if isinstance(node, Not):
        return node_sql(node.item, dialect).is_not(sa.true())
    parts = [node_sql(item, dialect) for item in node.items]
    if isinstance(node, AnyOf):
        return sa.or_(*parts)
    assert isinstance(node, AllOf)
    return sa.and_(*parts) if parts else sa.true()


def dimension_sql(dim: Dimension, dialect: str) -> sa.ColumnElement[object]:
    column = JOIN_GRAPH[dim.table].table.c[dim.column]
    if dim.json_path is not None:
        return json_document(column, dim.json_path, dialect)
    if dim.transform == "utc_date":
        return utc_date(column, dialect)
    if dim.transform is not None:
        raise AssertionError(f"unknown transform {dim.transform!r}")
    return column


def build_select(*, filter_rules: object, group_by: Sequence[str],
                 instrument_module_id: int | None, dialect_name: str,
                 package_ids: Sequence[int] | None = None,
                 dimension_values: Mapping[int, Collection[str]] | None = None) -> sa.Select:
    """The grouping statement; ``package_ids`` and ``dimension_values`` narrow it further.

    ``dimension_values`` maps a dimension's position to the only values it may take (used
    when the caller asks for known sub-group keys, so one sub-group needs no full scan).
    """
    dialect = check_dialect(dialect_name)
    tree = require_filter_rules(filter_rules)
    dims = require_group_by(list(group_by))
    root = JOIN_GRAPH[ROOT].table
    dim_columns = [dimension_sql(d, dialect) for d in dims]
    where: list[sa.ColumnElement[bool]] = []
    if tree.items:
        where.append(node_sql(tree, dialect))
    if instrument_module_id is not None:
        where.append(root.c.instrument_module_id == instrument_module_id)
    if package_ids is not None:
        where.append(id_in(root.c.id, package_ids, dialect))
    for position, allowed in (dimension_values or {}).items():
        where.append(dim_columns[position].in_(sorted(allowed)))

    selected = (
        sa.select(
            root.c.id.label("package_id"),
            root.c.checksum.label("checksum"),
            root.c.updated_at.label("updated_at"),
            *(column.label(f"dim_{i}") for i, column in enumerate(dim_columns)),
        )
        .select_from(join_from_root(referenced_tables(tree) | {d.table for d in dims}))
        .where(*where)
        .subquery("selected")
    )
    # Grouping over the subquery's columns, not the expressions: PostgreSQL cannot tell that
    # two JSON path expressions with separately bound paths are the same GROUP BY key.
    groups = [selected.c[f"dim_{i}"] for i in range(len(dims))]
    return sa.select(
        *groups,
        collect(selected.c.package_id, dialect).label(PACKAGE_IDS),
        collect(selected.c.checksum, dialect).label(PACKAGE_CHECKSUMS),
        sa.func.max(selected.c.updated_at).label(NEWEST_INPUT_AT),
    ).group_by(*groups)


def compile_grouping(*, filter_rules: object, group_by: Sequence[str],
                     instrument_module_id: int | None, dialect_name: str) -> sa.Select:
    """The one statement resolving a grouping into sub-groups (raises GroupingError)."""
    return build_select(filter_rules=filter_rules, group_by=group_by,
                        instrument_module_id=instrument_module_id, dialect_name=dialect_name)
