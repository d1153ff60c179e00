"""Hostile values: keys stay unique and safe, and strings are data, never SQL."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import sessionmaker

from ccat_assets.grouping import GroupingError, compile_grouping, resolve_subgroups, subgroup_key
from ccat_assets.grouping.keys import canonical_value
from ccat_assets.opsdb import ExecutedObsUnit, ObsUnit, PackageState, RawDataPackage, Source

SAFE_KEY = re.compile(r"[A-Za-z0-9._=-]+")
DROP = "'; DROP TABLE raw_data_package; --"
HOSTILE = [
    "a|b", "a,b", "a/b", "../etc", "..", "...", ".", "with space", "tab\there", "new\nline",
    "ünïcødé", "日本語", "🙂", "x" * 300, "NGC253", "NGC253 ", "ngc253", "NGC253--abc",
    "a__b", "source=NGC253__line=CO43", DROP, "100%", "under_score", "\\", "'", '"',
    "$1", "%s", "?", "none", "a" * 64, "a" * 65,
]


def assert_safe(key: str) -> None:
    assert SAFE_KEY.fullmatch(key), key
    for bad in ("|", ",", "/", " ", "..."):
        assert bad not in key, key


@given(
    dims=st.lists(st.sampled_from(["source", "line", "executed_obs_unit", "metadata.a_b"]),
                  min_size=1, max_size=3, unique=True),
    data=st.data(),
)
def test_different_values_never_share_a_key(dims, data) -> None:
    values = st.one_of(st.none(), st.text(max_size=320), st.sampled_from(HOSTILE),
                       st.integers(), st.floats(allow_nan=False))
    a = data.draw(st.lists(values, min_size=len(dims), max_size=len(dims)))
    b = data.draw(st.lists(values, min_size=len(dims), max_size=len(dims)))
    key_a, key_b = subgroup_key(dims, a), subgroup_key(dims, b)
    assert_safe(key_a)
    assert_safe(key_b)
    assert subgroup_key(dims, list(a)) == key_a  # deterministic
    if [canonical_value(v) for v in a] != [canonical_value(v) for v in b]:
        assert key_a != key_b


def test_hostile_values_are_distinct_and_unique_keys() -> None:
    keys = [subgroup_key(["source", "line"], [v, w]) for v in HOSTILE for w in HOSTILE[:5]]
    assert len(set(keys)) == len(keys)
    for key in keys:
        assert_safe(key)


SOURCE_LENGTH, LINE_LENGTH = 256, 64  # the column sizes: longer values live in metadata


@pytest.fixture(scope="module")
def hostile_world(engine) -> dict[str, dict[str, int]]:
    """One source, obs unit, scan and package per hostile name: dimension -> value -> id."""
    start = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    with sessionmaker(engine)() as session:
        packages = {}
        for i, name in enumerate(HOSTILE):
            unit = ObsUnit(name=f"ou-{i}", source=Source(name=name[:SOURCE_LENGTH]),
                           line_id=name[:LINE_LENGTH])
            scan = ExecutedObsUnit(name=f"scan-{i}", obs_unit=unit, start_time=start)
            packages[name] = RawDataPackage(
                name=f"pkg-{i}", executed_obs_unit=scan, state=PackageState.ARCHIVED,
                checksum=f"c{i}", relative_path=f"raw/{i}", meta={"label": name, "n": i})
        session.add_all(packages.values())
        session.commit()
        return {
            "source": {n[:SOURCE_LENGTH]: row.id for n, row in packages.items()},
            "metadata.label": {n: row.id for n, row in packages.items()},
        }


@pytest.mark.parametrize("group_by", [["source"], ["source", "line"], ["metadata.label"]])
def test_hostile_names_give_unique_safe_keys(session, hostile_world, group_by) -> None:
    found = resolve_subgroups(session, filter_rules=[], group_by=group_by)
    assert len(found) == len(HOSTILE)
    assert len({s.key for s in found}) == len(HOSTILE)
    for sub in found:
        assert_safe(sub.key)
        name = sub.dimensions[group_by[0]]
        assert sub.raw_data_package_ids == (hostile_world[group_by[0]][name],)
        assert sub.key == subgroup_key(group_by, [sub.dimensions[d] for d in group_by])
        # each key finds exactly its own sub-group again (verbatim and hashed alike)
        [again] = resolve_subgroups(session, filter_rules=[], group_by=group_by, keys=[sub.key])
        assert again == sub


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_in_values_are_data(session, hostile_world, value) -> None:
    source, line = value[:SOURCE_LENGTH], value[:LINE_LENGTH]
    for rules in (
        [{"table": "Source", "column": "name", "operator": "eq", "value": source}],
        [{"table": "Source", "column": "name", "operator": "in", "value": [source, DROP]},
         {"table": "ObsUnit", "column": "line_id", "operator": "eq", "value": line}],
        [{"table": "RawDataPackage", "column": "metadata", "json_path": "label",
          "operator": "eq", "value": value}],
    ):
        [sub] = resolve_subgroups(session, filter_rules=rules, group_by=[])
        assert sub.raw_data_package_ids == (hostile_world["metadata.label"][value],)
    assert session.scalar(sa.select(sa.func.count()).select_from(RawDataPackage)) == len(HOSTILE)


def test_like_pattern_with_sql_in_it_is_a_pattern(session, hostile_world) -> None:
    rules = [{"table": "Source", "column": "name", "operator": "like", "value": "'; DROP%"}]
    [sub] = resolve_subgroups(session, filter_rules=rules, group_by=[])
    assert sub.raw_data_package_ids == (hostile_world["metadata.label"][DROP],)


@pytest.mark.parametrize("path", [
    "label'; DROP TABLE x; --", "a b", "a..b", "$.a", "a[0", "a.*", "a\"b", "a}", "", ".a",
    "a[-1]", "a" + ".b" * 20,
])
def test_hostile_json_paths_are_refused(session, path) -> None:
    rules = [{"table": "RawDataPackage", "column": "metadata", "json_path": path,
              "operator": "eq", "value": "x"}]
    with pytest.raises(GroupingError) as caught:
        resolve_subgroups(session, filter_rules=rules, group_by=[])
    [message] = caught.value.errors
    assert message.startswith("filter_rules[0].json_path: ")
    with pytest.raises(GroupingError):
        resolve_subgroups(session, filter_rules=[], group_by=[f"metadata.{path}"])


@pytest.mark.parametrize("dialect", [postgresql.dialect(), sqlite.dialect()])
def test_compiled_sql_holds_no_user_text(dialect) -> None:
    rules = [
        {"table": "Source", "column": "name", "operator": "eq", "value": DROP},
        {"any": [{"table": "ObsUnit", "column": "line_id", "operator": "like",
                  "value": "zz_marker%"},
                 {"not": {"table": "RawDataPackage", "column": "metadata",
                          "json_path": "hostile_path_marker[3]", "operator": "in",
                          "value": ["marker_in_list"]}}]},
    ]
    sql = str(compile_grouping(filter_rules=rules, group_by=["metadata.group_marker"],
                               instrument_module_id=7, dialect_name=dialect.name)
              .compile(dialect=dialect))
    for text in ("DROP", "zz_marker", "hostile_path_marker", "marker_in_list",
                 "group_marker"):
        assert text not in sql
