"""The group_by vocabulary, as data: each dimension names a table, a column and a transform.

A sub-group is the set of packages sharing the values of a step's dimensions. Values are the
human names (scan name, source name, line id), unique in their tables, so keys read well and
stay stable. ``metadata.<json path>`` groups by any value in RawDataPackage.metadata; more JSON
prefixes are one entry in ``JSON_DIMENSIONS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ccat_assets.grouping.errors import GroupingError, describe, did_you_mean
from ccat_assets.grouping.jsonpath import Segment, parse_json_path


@dataclass(frozen=True)
class Dimension:
    name: str
    table: str
    column: str
    description: str
    transform: str | None = None  # "utc_date": the UTC day of a timestamp, 'YYYY-MM-DD'
    json_path: tuple[Segment, ...] | None = None


DIMENSIONS: Mapping[str, Dimension] = MappingProxyType(
    {
        d.name: d
        for d in (
            Dimension("executed_obs_unit", "ExecutedObsUnit", "name", "per scan"),
            Dimension("obs_unit", "ObsUnit", "name", "per planned observation"),
            Dimension("source", "Source", "name", "per source"),
            Dimension("line", "ObsUnit", "line_id", "per spectral line"),
            Dimension("instrument_module", "InstrumentModule", "name", "per instrument module"),
            Dimension("observing_program", "ObservingProgram", "name", "per observing program"),
            Dimension("obs_date", "ExecutedObsUnit", "start_time", "per UTC day of the scan",
                      transform="utc_date"),
        )
    }
)

#: ``<prefix>.<json path>`` dimensions: prefix -> (table, JSON column).
JSON_DIMENSIONS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {"metadata": ("RawDataPackage", "metadata")}
)
#: Dimensions whose SQL value is text, so a key's verbatim value can be pushed into the query.
TEXT_DIMENSIONS = frozenset(DIMENSIONS)


def dimension(name: str) -> Dimension:
    """The dimension called ``name``; raises KeyError or ValueError (bad JSON path)."""
    if name in DIMENSIONS:
        return DIMENSIONS[name]
    prefix, dot, path = name.partition(".")
    if not dot or prefix not in JSON_DIMENSIONS:
        raise KeyError(name)
    segments, reason = parse_json_path(path)
    if reason:
        raise ValueError(f"JSON path {path!r} {reason}")
    table, column = JSON_DIMENSIONS[prefix]
    return Dimension(name, table, column, f"per value of {column} at {path}",
                     json_path=segments)


def validate_group_by(group_by: object, *, where: str = "group_by") -> list[str]:
    """Every problem of a step's ``group_by``, each starting with its position."""
    if not isinstance(group_by, list | tuple):
        return [f"{where}: must be a list of dimension names, got {describe(group_by)}"]
    errors: list[str] = []
    seen: set[str] = set()
    vocabulary = [*DIMENSIONS, *(f"{p}.<json path>" for p in JSON_DIMENSIONS)]
    for i, name in enumerate(group_by):
        at = f"{where}[{i}]"
        if not isinstance(name, str):
            errors.append(f"{at}: a dimension name must be a string, got {describe(name)}")
            continue
        try:
            dimension(name)
        except KeyError:
            hint = did_you_mean(name, DIMENSIONS) or f" (dimensions: {', '.join(vocabulary)})"
            errors.append(f"{at}: unknown dimension {name!r}{hint}")
            continue
        except ValueError as exc:
            errors.append(f"{at}: {exc}")
            continue
        if name in seen:
            errors.append(f"{at}: dimension {name!r} is listed twice")
        seen.add(name)
    return errors


def require_group_by(group_by: object, where: str = "group_by") -> list[Dimension]:
    errors = validate_group_by(group_by, where=where)
    if errors:
        raise GroupingError(errors)
    return [dimension(name) for name in group_by]  # type: ignore[union-attr]


def _check_vocabulary() -> None:
    """Every registered dimension must name a reachable column (fail at import, not at run)."""
    from ccat_assets.grouping.columns import COLUMNS

    for d in [*DIMENSIONS.values(), *(Dimension(p, t, c, "") for p, (t, c) in
                                      JSON_DIMENSIONS.items())]:
        if d.table not in COLUMNS or d.column not in COLUMNS[d.table]:
            raise ValueError(f"dimension {d.name!r}: {d.table}.{d.column} is not reachable")


_check_vocabulary()
