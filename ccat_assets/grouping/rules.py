"""Filter rules: parse the JSON rule language into a typed tree, reporting every problem.

The language is the CCAT ops-db API's rule object, so its payloads work unchanged::

    {"table": "Source", "column": "name", "operator": "eq", "value": "NGC253"}
    {"table": "RawDataPackage", "column": "metadata",
     "json_path": "observation.frequency_ghz", "operator": "gt", "value": 400}

A list means AND; ``{"any": [...]}`` is OR, ``{"all": [...]}`` AND, ``{"not": rule}`` the
complement, nestable. Parsing never touches a database, so specs are checked offline, and
every message starts with the position of the field at fault (``filter_rules[0].any[1].value``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ccat_assets.grouping.columns import COLUMNS, JSON, ColumnInfo, column_names, json_columns
from ccat_assets.grouping.errors import GroupingError, describe, did_you_mean
from ccat_assets.grouping.joins import JOIN_GRAPH
from ccat_assets.grouping.jsonpath import Segment, parse_json_path
from ccat_assets.grouping.values import OPERATORS, BadValue, json_kind, normalize_value

RULE_FIELDS = ("table", "column", "operator", "value", "json_path")
COMPOSITIONS = ("any", "all", "not")
MAX_DEPTH = 16
MAX_RULES = 1_000


@dataclass(frozen=True)
class Condition:
    """One comparison; ``kind`` is the kind of value compared (the JSON type for paths)."""

    column: ColumnInfo
    operator: str
    value: Any
    kind: str
    json_path: tuple[Segment, ...] | None = None


@dataclass(frozen=True)
class AllOf:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Condition | AllOf | AnyOf | Not


class _Parser:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.count = 0

    def error(self, at: str, message: str) -> None:
        self.errors.append(f"{at}: {message}")

    def items(self, value: object, at: str, depth: int) -> tuple[Node, ...] | None:
        if not isinstance(value, list):
            self.error(at, f"must be a list of rules, got {describe(value)}")
            return None
        nodes = [self.node(item, f"{at}[{i}]", depth) for i, item in enumerate(value)]
        parsed = tuple(n for n in nodes if n is not None)
        return parsed if len(parsed) == len(nodes) else None

    def node(self, obj: object, at: str, depth: int) -> Node | None:
        self.count += 1
        if depth > MAX_DEPTH:
            self.error(at, f"rules nest deeper than {MAX_DEPTH} levels")
            return None
        if self.count > MAX_RULES:
            if self.count == MAX_RULES + 1:
                self.error(at, f"more than {MAX_RULES} rules")
            return None
        if not isinstance(obj, dict):
            self.error(at, "a rule must be an object with table, column and operator (or a "
                           f"composition 'any', 'all', 'not'), got {describe(obj)}")
            return None
        keys = [k for k in obj if k in COMPOSITIONS]
        if keys:
            if len(obj) != 1:
                self.error(at, "a composition is an object with exactly one key ('any', 'all' "
                               f"or 'not'), got keys {sorted(map(str, obj))}")
                return None
            return self.composition(keys[0], obj[keys[0]], f"{at}.{keys[0]}", depth)
        return self.condition(obj, at)

    def composition(self, op: str, value: object, at: str, depth: int) -> Node | None:
        if op == "not":
            if not isinstance(value, dict):
                self.error(at, "needs one rule object (wrap several in {'all': [...]}), got "
                               f"{describe(value)}")
                return None
            inner = self.node(value, at, depth + 1)
            return None if inner is None else Not(inner)
        if isinstance(value, list) and not value:
            self.error(at, f"needs at least one rule ('{op}' of nothing is ambiguous)")
            return None
        nodes = self.items(value, at, depth + 1)
        if nodes is None:
            return None
        return AnyOf(nodes) if op == "any" else AllOf(nodes)

    def condition(self, rule: dict[Any, Any], at: str) -> Condition | None:
        before = len(self.errors)
        for key in rule:
            if key not in RULE_FIELDS:
                self.error(f"{at}.{key}", f"unknown field{did_you_mean(key, RULE_FIELDS)} "
                                          f"(fields: {', '.join(RULE_FIELDS)}; or a "
                                          "composition 'any', 'all', 'not')")
        info = self.column_of(rule, at)
        operator = rule.get("operator")
        if "operator" not in rule:
            self.error(f"{at}.operator", f"missing (one of: {', '.join(OPERATORS)})")
        elif operator not in OPERATORS:
            hint = did_you_mean(operator, OPERATORS) or f" (operators: {', '.join(OPERATORS)})"
            self.error(f"{at}.operator", f"unknown operator {describe(operator)}{hint}")
        path = self.json_path_of(rule, at, info)
        if len(self.errors) > before or info is None:
            return None
        assert isinstance(operator, str)
        if operator != "is_null" and "value" not in rule:
            self.error(f"{at}.value", f"missing: operator {operator!r} needs a value")
            return None
        return self.checked(info, operator, rule.get("value"), path, at)

    def column_of(self, rule: dict[Any, Any], at: str) -> ColumnInfo | None:
        table, column = rule.get("table"), rule.get("column")
        if "table" not in rule:
            self.error(f"{at}.table", f"missing (tables: {', '.join(JOIN_GRAPH)})")
            return None
        if not isinstance(table, str) or table not in JOIN_GRAPH:
            hint = did_you_mean(table, JOIN_GRAPH) or f" (tables: {', '.join(JOIN_GRAPH)})"
            self.error(f"{at}.table", f"{describe(table)} is not a table a grouping can reach"
                                      f"{hint}")
            return None
        if "column" not in rule:
            self.error(f"{at}.column", f"missing (columns of {table}: "
                                       f"{', '.join(column_names(table))})")
            return None
        if not isinstance(column, str) or column not in COLUMNS[table]:
            names = column_names(table)
            hint = did_you_mean(column, names) or f" (columns: {', '.join(names)})"
            self.error(f"{at}.column", f"{describe(column)} is not a column of {table}{hint}")
            return None
        return COLUMNS[table][column]

    def json_path_of(self, rule: dict[Any, Any], at: str,
                     info: ColumnInfo | None) -> tuple[Segment, ...] | None:
        raw = rule.get("json_path")
        if info is None:
            return None
        if raw is None:
            if info.kind == JSON:
                self.error(f"{at}.json_path", f"column {info.label} is JSON: give a json_path "
                                              "such as 'observation.frequency_ghz'")
            return None
        if info.kind != JSON:
            self.error(f"{at}.json_path", f"column {info.label} is not JSON; json_path applies "
                                          f"only to {', '.join(json_columns())}")
            return None
        segments, reason = parse_json_path(raw)
        if reason:
            self.error(f"{at}.json_path", f"{describe(raw)} {reason}")
        return segments

    def checked(self, info: ColumnInfo, operator: str, value: object,
                path: tuple[Segment, ...] | None, at: str) -> Condition | None:
        kind, subject = info.kind, f"{info.kind} column {info.label}"
        if path is not None:
            kind = json_kind(value) or ""
            subject = f"JSON path {'.'.join(map(str, path))!r} of {info.label}"
            if operator == "like" and not isinstance(value, str):
                self.error(f"{at}.value", f"'like' needs a string pattern, got {describe(value)}")
                return None
            if operator != "is_null" and not kind:
                self.error(f"{at}.value", f"operator {operator!r} on {subject} needs a string, "
                                          "number or boolean (for a list, all of one type), "
                                          f"got {describe(value)}")
                return None
            subject = f"{subject} compared as {kind or 'null'}"
        try:
            # is_null ignores the kind, so a path without a value may pass any kind here.
            normalized = normalize_value(operator, kind or "string", value, subject=subject,
                                         enum_class=info.enum_class)
        except BadValue as bad:
            self.error(f"{at}.{bad.field}", bad.message)
            return None
        return Condition(info, operator, normalized, kind, path)


def parse_filter_rules(rules: object, where: str = "filter_rules") -> tuple[AllOf, list[str]]:
    """The rule tree (a top-level AND) and every problem found; the tree is empty on errors."""
    parser = _Parser()
    if not isinstance(rules, list):
        parser.error(where, f"must be a list of rules (combined with AND), got {describe(rules)}")
        return AllOf(()), parser.errors
    nodes = parser.items(rules, where, 0)
    if parser.errors or nodes is None:
        return AllOf(()), parser.errors
    return AllOf(nodes), []


def validate_filter_rules(rules: object, *, where: str = "filter_rules") -> list[str]:
    """Every problem of ``rules``, each message starting with the position of its field."""
    return parse_filter_rules(rules, where)[1]


def require_filter_rules(rules: object, where: str = "filter_rules") -> AllOf:
    tree, errors = parse_filter_rules(rules, where)
    if errors:
        raise GroupingError(errors)
    return tree


def referenced_tables(node: Node) -> set[str]:
    if isinstance(node, Condition):
        return {node.column.table}
    if isinstance(node, Not):
        return referenced_tables(node.item)
    return set().union(*(referenced_tables(item) for item in node.items))
