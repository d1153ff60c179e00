"""DataGrouping filter engine: rules -> one SQL query -> keyed sub-groups.

Modules, one job each: ``rules`` (parse and validate the rule language), ``joins`` (the
join graph, as data), ``columns`` (what a rule may name), ``dimensions`` (the group_by
vocabulary, as data), ``jsonpath`` and ``dialect`` (the SQL that differs between PostgreSQL
and SQLite), ``compile`` (rules -> select), ``resolve`` (run it, build sub-groups),
``presets`` and ``preview``. ``keys`` defines the canonical sub-group key.
"""

from ccat_assets.grouping.compile import compile_grouping
from ccat_assets.grouping.dimensions import DIMENSIONS, Dimension, validate_group_by
from ccat_assets.grouping.errors import GroupingError
from ccat_assets.grouping.keys import ALL_KEY, grain_name, subgroup_key
from ccat_assets.grouping.presets import expand_preset, get_preset, load_presets, read_presets
from ccat_assets.grouping.preview import format_preview_table, preview_rows
from ccat_assets.grouping.resolve import SubGroup, resolve_subgroups
from ccat_assets.grouping.rules import validate_filter_rules

__all__ = [
    "ALL_KEY",
    "DIMENSIONS",
    "Dimension",
    "GroupingError",
    "SubGroup",
    "compile_grouping",
    "expand_preset",
    "format_preview_table",
    "get_preset",
    "grain_name",
    "load_presets",
    "preview_rows",
    "read_presets",
    "resolve_subgroups",
    "subgroup_key",
    "validate_filter_rules",
    "validate_group_by",
]
