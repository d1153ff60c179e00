"""Canonical sub-group keys: equal in the ops-db, in Dagster partitions and on disk.

A key is ``dim=value`` pairs in ``group_by`` order joined by ``__``; ``all`` for ``[]``.
A value is kept verbatim only when it is already safe and unambiguous; otherwise it becomes
``<slug>--<hash>``. Verbatim values never contain ``--`` or ``__``, and hashed ones always
contain ``--``, so the two forms cannot collide and two different value tuples never share a
key. Keys never hold ``|``, ``,``, ``/``, whitespace or ``...`` (Dagster's multi-partition
separator, UI selection and range syntax, and path traversal).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence

ALL_KEY = "all"
PAIR_SEPARATOR = "__"
HASH_SEPARATOR = "--"
MAX_VERBATIM = 64
SLUG_LENGTH = 40
HASH_HEX = 12

_VERBATIM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_NONE_MARKER = "\x00none"


def canonical_value(value: object) -> str:
    """The string a dimension value is keyed by (None, dates and numbers included)."""
    if value is None:
        return _NONE_MARKER
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _is_verbatim(text: str) -> bool:
    return (
        len(text) <= MAX_VERBATIM
        and _VERBATIM.fullmatch(text) is not None
        and HASH_SEPARATOR not in text
        and PAIR_SEPARATOR not in text
        and not text.endswith(".")
    )


def encode_value(value: object) -> str:
    text = canonical_value(value)
    if _is_verbatim(text):
        return text
    slug = _UNSAFE.sub("-", text.replace(_NONE_MARKER, "none"))
    slug = re.sub(r"[-_.]{2,}", "-", slug).strip("-_.")[:SLUG_LENGTH].rstrip("-_.") or "x"
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_HEX]
    return f"{slug}{HASH_SEPARATOR}{digest}"


def subgroup_key(group_by: Sequence[str], values: Sequence[object]) -> str:
    """The key of the sub-group whose dimension ``group_by[i]`` has value ``values[i]``."""
    if len(group_by) != len(values):
        raise ValueError(f"{len(group_by)} dimensions but {len(values)} values")
    if not group_by:
        return ALL_KEY
    return PAIR_SEPARATOR.join(
        f"{dim}={encode_value(value)}" for dim, value in zip(group_by, values, strict=True)
    )


def grain_name(group_by: Sequence[str]) -> str:
    """The grain of a step, e.g. ``executed_obs_unit`` or ``source+line``; ``all`` for []."""
    return "+".join(group_by) if group_by else ALL_KEY
