"""From wanted sub-group keys back to the dimension values they can have, for the query.

The executor asks for one or a few keys; scanning every package of the grouping for that
would be wasted work. A key's verbatim values (no ``--`` hash suffix) are the exact text of
text dimensions, so they become ``dim IN (...)`` conditions. This only narrows the query:
the exact match on the key is still made on the results.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from ccat_assets.grouping.dimensions import TEXT_DIMENSIONS
from ccat_assets.grouping.keys import ALL_KEY, HASH_SEPARATOR, PAIR_SEPARATOR


def split_key(group_by: Sequence[str], key: str) -> list[str] | None:
    """The encoded values of ``key`` for this ``group_by``, or None if it has another grain.

    Encoded values never contain ``__``, so each value ends at the next separator even when
    a dimension name (a JSON path) contains one.
    """
    if not group_by:
        return [] if key == ALL_KEY else None
    values: list[str] = []
    rest = key
    for i, dim in enumerate(group_by):
        prefix = f"{dim}=" if i == 0 else f"{PAIR_SEPARATOR}{dim}="
        if not rest.startswith(prefix):
            return None
        value, sep, tail = rest[len(prefix):].partition(PAIR_SEPARATOR)
        values.append(value)
        rest = sep + tail
    return values if rest == "" else None


def pushdown_values(group_by: Sequence[str],
                    keys: Collection[str]) -> dict[int, set[str]] | None:
    """Allowed values per dimension position; None when no key fits this grain at all."""
    allowed: dict[int, set[str]] = {i: set() for i, d in enumerate(group_by)
                                    if d in TEXT_DIMENSIONS}
    fitting = 0
    for key in keys:
        values = split_key(group_by, key)
        if values is None:
            continue
        fitting += 1
        for i, encoded in enumerate(values):
            if i in allowed and HASH_SEPARATOR in encoded:
                del allowed[i]  # a hashed value cannot be inverted: no narrowing on it
            elif i in allowed:
                allowed[i].add(encoded)
    return allowed if fitting else None
