"""Run the grouping statement and turn its rows into keyed sub-groups.

Values that are different in SQL but the same for keys (``400`` and ``400.0`` in JSONB, a
JSON number and its spelling as a string) give one key, so rows are merged by key here:
a key names exactly one sub-group.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import operator
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from sqlalchemy.orm import Session

from ccat_assets.grouping.compile import build_select
from ccat_assets.grouping.dialect import decode_collected
from ccat_assets.grouping.dimensions import Dimension, require_group_by, validate_group_by
from ccat_assets.grouping.errors import GroupingError
from ccat_assets.grouping.keyfilter import pushdown_values
from ccat_assets.grouping.keys import subgroup_key
from ccat_assets.grouping.rules import validate_filter_rules


@dataclass(frozen=True)
class SubGroup:
    """One sub-group of a grouping at one grain: its identity and its inputs."""

    key: str
    dimensions: dict[str, Any]
    raw_data_package_ids: tuple[int, ...]
    package_checksums: tuple[str, ...]
    newest_input_at: dt.datetime | None

    @property
    def n_packages(self) -> int:
        return len(self.raw_data_package_ids)


@dataclass
class _Group:
    dimensions: dict[str, Any]
    ids: list[int]
    checksums: list[str]
    newest: dt.datetime | None


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small acyclic objects.

    Resolving 100k packages allocates a few hundred thousand lists and tuples; the collector
    would walk the whole heap again and again meanwhile (measured: this Python part takes
    about half the time without it). Reference counting still frees everything, as nothing
    built here forms a cycle.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _dialect_name(session: Session | Any) -> str:
    get_bind = getattr(session, "get_bind", None)
    return str((get_bind() if get_bind is not None else session).dialect.name)


def _package_ids(package_ids: Collection[int]) -> list[int]:
    bad = [i for i in package_ids if isinstance(i, bool) or not isinstance(i, int)]
    if bad:
        raise GroupingError([f"package_ids: ids must be integers, got {bad[:3]!r}"])
    return sorted(set(package_ids))


def resolve_subgroups(session: Session, *, filter_rules: list[Any], group_by: Sequence[str],
                      instrument_module_id: int | None = None,
                      keys: Collection[str] | None = None,
                      package_ids: Collection[int] | None = None) -> list[SubGroup]:
    """The sub-groups of a grouping at the grain ``group_by``, sorted by key.

    ``keys`` keeps only those sub-groups; ``package_ids`` only considers those packages
    (the executor's way to find the finer sub-groups inside a coarse one). Raises
    :class:`GroupingError` for bad rules or dimensions, before any query.
    """
    group_by = list(group_by)
    errors = validate_filter_rules(filter_rules) + validate_group_by(group_by)
    if errors:
        raise GroupingError(errors)
    dims = require_group_by(group_by)
    wanted = None if keys is None else set(keys)
    dimension_values = None
    if wanted is not None:
        dimension_values = pushdown_values(group_by, wanted)
        if dimension_values is None:
            return []
    ids = None if package_ids is None else _package_ids(package_ids)
    if ids == []:
        return []
    statement = build_select(
        filter_rules=filter_rules, group_by=group_by, instrument_module_id=instrument_module_id,
        dialect_name=_dialect_name(session), package_ids=ids, dimension_values=dimension_values)

    rows = session.execute(statement).all()
    with _gc_paused():
        return _build(rows, group_by, dims, wanted)


def _build(rows: Sequence[Any], group_by: list[str], dims: list[Dimension],
           wanted: set[str] | None) -> list[SubGroup]:
    groups: dict[str, _Group] = {}
    n_dims = len(dims)
    for row in rows:
        ids = decode_collected(row[n_dims])
        if not ids:
            continue  # group_by [] over no package: the aggregate's empty row
        values = [json.loads(v) if d.json_path is not None and v is not None else v
                  for d, v in zip(dims, row[:n_dims], strict=True)]
        key = subgroup_key(group_by, values)
        if wanted is not None and key not in wanted:
            continue
        checksums, newest = decode_collected(row[n_dims + 1]), row[n_dims + 2]
        group = groups.get(key)
        if group is None:
            groups[key] = _Group(dict(zip(group_by, values, strict=True)), ids, checksums,
                                 newest)
            continue
        if min(ids) < min(group.ids):  # the same dimension values whatever the row order
            group.dimensions = dict(zip(group_by, values, strict=True))
        group.ids.extend(ids)
        group.checksums.extend(checksums)
        group.newest = max((t for t in (group.newest, newest) if t is not None), default=None)
    return [_subgroup(key, groups[key]) for key in sorted(groups)]


def _subgroup(key: str, group: _Group) -> SubGroup:
    ids, checksums = group.ids, group.checksums
    if not all(map(operator.lt, ids, islice(ids, 1, None))):
        order = sorted(range(len(ids)), key=ids.__getitem__)
        ids, checksums = [ids[i] for i in order], [checksums[i] for i in order]
    return SubGroup(key=key, dimensions=group.dimensions, raw_data_package_ids=tuple(ids),
                    package_checksums=tuple(checksums), newest_input_at=group.newest)
