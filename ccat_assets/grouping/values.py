"""Check and normalize a rule's value against its operator and the kind of its column.

Errors are raised as :class:`BadValue` naming the rule field at fault (``value`` or
``operator``), so the message can point at it. Normalized values are what the compiler binds:
enum members, UTC-aware datetimes, tuples for lists.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from typing import Any

from ccat_assets.grouping.columns import BOOL, DATETIME, ENUM, JSON, NUMBER, STRING
from ccat_assets.grouping.errors import describe

SCALAR_OPERATORS = ("eq", "neq", "gt", "gte", "lt", "lte")
LIST_OPERATORS = ("in", "not_in")
ORDER_OPERATORS = ("gt", "gte", "lt", "lte", "between")
OPERATORS = (*SCALAR_OPERATORS, *LIST_OPERATORS, "like", "between", "is_null")
ORDERED_KINDS = (STRING, NUMBER, DATETIME)
MAX_LIST = 10_000
LIKE_ESCAPE = "\\"

_EXPECTED = {
    STRING: "a string",
    NUMBER: "a number",
    BOOL: "true or false",
    DATETIME: "an ISO 8601 timestamp string such as '2024-05-01T00:00:00Z'",
}


class BadValue(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def json_kind(value: object) -> str | None:
    """The comparison kind a JSON path rule takes from its value (None: not a JSON scalar)."""
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int | float):
        return NUMBER
    if isinstance(value, str):
        return STRING
    if isinstance(value, list | tuple) and value:
        kinds = {json_kind(item) for item in value}
        return kinds.pop() if len(kinds) == 1 else None
    return None


def parse_timestamp(text: str) -> dt.datetime:
    """ISO 8601 to UTC-aware; a date means its midnight, no offset means UTC (ops-db time)."""
    stamp = dt.datetime.fromisoformat(text.strip())
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.astimezone(dt.UTC)


def _scalar(kind: str, value: object, operator: str, subject: str,
            enum_class: type[enum.Enum] | None) -> Any:
    def bad(expected: str) -> BadValue:
        return BadValue("value", f"operator {operator!r} on {subject} needs {expected}, got "
                                 f"{describe(value)}")

    if value is None:
        raise BadValue("value", f"operator {operator!r} needs a value; to match a missing "
                                "value use operator 'is_null'")
    if kind == ENUM:
        assert enum_class is not None
        members = [str(m.value) for m in enum_class]
        if isinstance(value, str):
            for member in enum_class:
                if value.upper() in (str(member.value).upper(), member.name.upper()):
                    return member
        raise BadValue("value", f"{describe(value)} is not a member of {subject} "
                                f"(members: {', '.join(members)}; any letter case)")
    if kind == STRING:
        if not isinstance(value, str):
            raise bad(_EXPECTED[STRING])
        if "\x00" in value:
            raise BadValue("value", "a string value cannot contain the NUL character")
        return value
    if kind == NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad(_EXPECTED[NUMBER])
        if not math.isfinite(value) or abs(value) >= 2**63:
            raise bad("a finite number within 64 bits")
        return value
    if kind == BOOL:
        if not isinstance(value, bool):
            raise bad(_EXPECTED[BOOL])
        return value
    if kind == DATETIME:
        if not isinstance(value, str):
            raise bad(_EXPECTED[DATETIME])
        try:
            return parse_timestamp(value)
        except ValueError:
            raise bad(_EXPECTED[DATETIME]) from None
    raise AssertionError(kind)


def normalize_value(operator: str, kind: str, value: object, *, subject: str,
                    enum_class: type[enum.Enum] | None = None) -> Any:
    """The value to bind for ``operator`` on a value of ``kind``, or :class:`BadValue`.

    ``subject`` names what is compared, for messages: "string column Source.name".
    """
    if kind == JSON:
        raise AssertionError("JSON columns are compared through a json_path")
    if operator == "is_null":
        if value is None or isinstance(value, bool):
            return value is None or value
        raise BadValue("value", f"operator 'is_null' takes true, false or no value, got "
                                f"{describe(value)}")
    if operator in ORDER_OPERATORS and kind not in ORDERED_KINDS:
        hint = "; use eq, neq, in or not_in" if kind in (ENUM, BOOL) else ""
        raise BadValue("operator", f"{operator!r} does not apply to {subject}{hint}")
    if operator == "like":
        if kind != STRING:
            raise BadValue("operator", f"'like' applies to text only, not to {subject}")
        pattern = _scalar(STRING, value, operator, subject, None)
        if _ends_in_escape(pattern):
            raise BadValue("value", "a like pattern cannot end with a lone '\\' (the escape "
                                    "character; write '\\\\' for a backslash)")
        return pattern
    if operator in LIST_OPERATORS or operator == "between":
        if not isinstance(value, list | tuple) or not value:
            raise BadValue("value", f"operator {operator!r} needs a non-empty list, got "
                                    f"{describe(value)}")
        if operator == "between" and len(value) != 2:
            raise BadValue("value", f"operator 'between' needs a list of two bounds [low, "
                                    f"high], got {len(value)} items")
        if len(value) > MAX_LIST:
            raise BadValue("value", f"operator {operator!r} takes at most {MAX_LIST} items")
        items = tuple(_scalar(kind, item, operator, subject, enum_class) for item in value)
        if operator == "between" and items[0] > items[1]:
            raise BadValue("value", f"'between' bounds are reversed: {value[0]!r} > "
                                    f"{value[1]!r}")
        return items
    return _scalar(kind, value, operator, subject, enum_class)


def _ends_in_escape(pattern: str) -> bool:
    run = len(pattern) - len(pattern.rstrip(LIKE_ESCAPE))
    return run % 2 == 1
