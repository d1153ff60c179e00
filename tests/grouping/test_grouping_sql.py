"""The compiled statement: one query, LEFT OUTER JOINs only where needed, each table once."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from ccat_assets.grouping import GroupingError, compile_grouping
from ccat_assets.grouping.dialect import like_to_glob
from ccat_assets.grouping.joins import JOIN_GRAPH, path_to

DIALECTS = [postgresql.dialect(), sqlite.dialect()]


def sql(dialect, rules, group_by=()) -> str:
    statement = compile_grouping(filter_rules=rules, group_by=list(group_by),
                                 instrument_module_id=None, dialect_name=dialect.name)
    return str(statement.compile(dialect=dialect))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_each_table_joined_once_and_outer(dialect) -> None:
    rules = [{"table": "Source", "column": "name", "operator": "eq", "value": "A"},
             {"not": {"table": "Source", "column": "name", "operator": "eq", "value": "B"}},
             {"table": "ObsUnit", "column": "line_id", "operator": "eq", "value": "CO43"}]
    text = sql(dialect, rules, ["source", "line", "executed_obs_unit"])
    assert text.count("LEFT OUTER JOIN source ") == 1
    assert text.count("LEFT OUTER JOIN obs_unit ") == 1
    assert text.count("LEFT OUTER JOIN executed_obs_unit ") == 1
    assert " JOIN instrument_module" not in text and " JOIN observing_program" not in text
    assert text.count("JOIN") == text.count("LEFT OUTER JOIN") == 3
    assert "DISTINCT" not in text
    assert text.count("SELECT") == 2  # the grouping over one selecting subquery


@pytest.mark.parametrize("dialect", DIALECTS)
def test_only_the_root_for_package_rules(dialect) -> None:
    text = sql(dialect, [{"table": "RawDataPackage", "column": "state", "operator": "eq",
                          "value": "ARCHIVED"}])
    assert "JOIN" not in text


def test_join_graph_reaches_every_table_from_the_root() -> None:
    for name in JOIN_GRAPH:
        assert path_to(name)[0] == "RawDataPackage"
    assert path_to("Source") == ["RawDataPackage", "ExecutedObsUnit", "ObsUnit", "Source"]


def test_unknown_dialect_and_bad_rules() -> None:
    with pytest.raises(ValueError, match="not 'mysql'"):
        compile_grouping(filter_rules=[], group_by=[], instrument_module_id=None,
                         dialect_name="mysql")
    with pytest.raises(GroupingError):
        compile_grouping(filter_rules=[{"any": []}], group_by=[], instrument_module_id=None,
                         dialect_name="sqlite")


@pytest.mark.parametrize(("like", "glob"), [
    ("NGC%", "NGC*"), ("p_1", "p?1"), ("a*b?c[d]", "a[*]b[?]c[[]d]"),
    ("100\\%", "100%"), ("a\\_b", "a_b"), ("a\\\\b", "a\\b"), ("\\*", "[*]"),
])
def test_like_to_glob(like: str, glob: str) -> None:
    assert like_to_glob(like) == glob
