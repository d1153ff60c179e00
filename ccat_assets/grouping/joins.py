"""The declarative join graph: which tables a rule or a dimension can reach, and how.

The graph is data. Each entry names a model and the foreign key on its parent table that
leads to it; the root is RawDataPackage, the unit a grouping selects. Making one more table
reachable is one more entry here: rules, dimensions and the compiler find it by name.

Every edge is a to-one join (the parent's foreign key to the child's primary key), checked at
import, so joining never multiplies a package: the compiled query needs no DISTINCT. All joins
are LEFT OUTER, so a package whose scan has no source still exists for ``is_null`` and ``not``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import sqlalchemy as sa

from ccat_assets.opsdb.observation import (
    ExecutedObsUnit,
    InstrumentModule,
    ObservingProgram,
    ObsUnit,
    RawDataPackage,
    Source,
)

ROOT = "RawDataPackage"


@dataclass(frozen=True)
class JoinEdge:
    """How to reach ``model`` from ``parent``: ``parent.<via> = model.id``."""

    model: type
    parent: str | None = None
    via: str | None = None

    @property
    def table(self) -> sa.Table:
        return self.model.__table__  # type: ignore[attr-defined, no-any-return]


JOIN_GRAPH: Mapping[str, JoinEdge] = MappingProxyType(
    {
        "RawDataPackage": JoinEdge(RawDataPackage),
        "ExecutedObsUnit": JoinEdge(ExecutedObsUnit, "RawDataPackage", "executed_obs_unit_id"),
        "ObsUnit": JoinEdge(ObsUnit, "ExecutedObsUnit", "obs_unit_id"),
        "Source": JoinEdge(Source, "ObsUnit", "source_id"),
        "ObservingProgram": JoinEdge(ObservingProgram, "ObsUnit", "observing_program_id"),
        # The package's own module, not the obs unit's: a scan yields one package per module.
        "InstrumentModule": JoinEdge(InstrumentModule, "RawDataPackage", "instrument_module_id"),
    }
)


def path_to(name: str) -> list[str]:
    """Table names from the root down to ``name`` (root first)."""
    chain = [name]
    while (parent := JOIN_GRAPH[chain[-1]].parent) is not None:
        if parent in chain:
            raise ValueError(f"join graph has a cycle through {parent}")
        chain.append(parent)
    return chain[::-1]


def join_from_root(names: Iterable[str]) -> sa.FromClause:
    """The root LEFT OUTER JOINed to every table in ``names`` and their ancestors, once each."""
    order: list[str] = []
    for name in names:
        for step in path_to(name):
            if step not in order:
                order.append(step)
    joined: sa.FromClause = JOIN_GRAPH[ROOT].table
    for name in order:
        edge = JOIN_GRAPH[name]
        if edge.parent is None:
            continue
        parent = JOIN_GRAPH[edge.parent].table
        joined = joined.outerjoin(edge.table, parent.c[edge.via] == edge.table.c.id)
    return joined


def _check_graph() -> None:
    """Refuse a graph that could duplicate packages or never reach the root."""
    roots = [name for name, edge in JOIN_GRAPH.items() if edge.parent is None]
    if roots != [ROOT]:
        raise ValueError(f"join graph must have exactly one root {ROOT!r}, has {roots}")
    for name, edge in JOIN_GRAPH.items():
        path_to(name)
        if edge.parent is None:
            continue
        if edge.parent not in JOIN_GRAPH or edge.via is None:
            raise ValueError(f"join graph entry {name!r}: unknown parent {edge.parent!r}")
        via = JOIN_GRAPH[edge.parent].table.c[edge.via]
        if not any(fk.column is edge.table.c.id for fk in via.foreign_keys):
            raise ValueError(f"join graph entry {name!r}: {edge.parent}.{edge.via} is no "
                             f"foreign key to {name}.id (only to-one joins are allowed)")


_check_graph()
