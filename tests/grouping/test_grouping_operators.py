"""Every operator and composition, on SQLite and PostgreSQL, against a small known world."""

from __future__ import annotations

from typing import Any

import pytest

from ccat_assets.grouping import GroupingError


def r(table: str, column: str, operator: str, value: Any = None,
      path: str | None = None) -> dict[str, Any]:
    made: dict[str, Any] = {"table": table, "column": column, "operator": operator}
    if value is not None:
        made["value"] = value
    if path is not None:
        made["json_path"] = path
    return made


def meta(path: str, operator: str, value: Any = None) -> dict[str, Any]:
    return r("RawDataPackage", "metadata", operator, value, path)


def p(*numbers: int) -> set[str]:
    return {f"p{n:02d}" for n in numbers}


FREQ = "observation.frequency_ghz"
NGC253 = r("Source", "name", "eq", "NGC253")
SEED_CHAI_NGC253_CO43 = [
    {"table": "Source", "column": "name", "operator": "eq", "value": "NGC253"},
    {"table": "ObsUnit", "column": "line_id", "operator": "eq", "value": "CO43"},
    {"table": "InstrumentModule", "column": "name", "operator": "eq", "value": "CHAI"},
    {"table": "RawDataPackage", "column": "state", "operator": "eq", "value": "archived"},
]

CASES = {
    # one per operator on plain columns
    "eq": ([NGC253], p(1, 2, 3, 4, 5)),
    "neq keeps SQL meaning: a missing line is not 'different'": (
        [r("ObsUnit", "line_id", "neq", "CO43")], p(5)),
    "in": ([r("Source", "name", "in", ["M82", "SgrB2"])], p(6, 7, 8, 10)),
    "not_in": ([r("InstrumentModule", "name", "not_in", ["CHAI"])], p(2, 8, 10)),
    "gt number column": ([r("RawDataPackage", "size_bytes", "gt", 8000)], p(9, 10)),
    "gte number column": ([r("RawDataPackage", "size_bytes", "gte", 9000)], p(9, 10)),
    "lt number column float": ([r("RawDataPackage", "size_bytes", "lt", 1500.5)], p(1)),
    "lte number column": ([r("RawDataPackage", "size_bytes", "lte", 2000)], p(1, 2)),
    "gt string by code point": ([r("Source", "name", "gt", "M82")], p(1, 2, 3, 4, 5, 8, 10)),
    "lt string": ([r("Source", "name", "lt", "N")], p(6, 7)),
    "lt datetime": ([r("ExecutedObsUnit", "start_time", "lt", "2024-05-02T00:00:00Z")],
                    p(1, 2)),
    "gte datetime with offset": (
        [r("ExecutedObsUnit", "start_time", "gte", "2024-05-03T00:30:00+02:00")],
        p(6, 7, 8, 10)),
    "between datetimes, date means midnight UTC": (
        [r("ExecutedObsUnit", "start_time", "between", ["2024-05-02", "2024-05-02T23:00:00"])],
        p(3, 4, 5, 6, 7)),
    "between numbers": ([r("RawDataPackage", "size_bytes", "between", [2000, 4000])],
                        p(2, 3, 4)),
    "like": ([r("Source", "name", "like", "NGC%")], p(1, 2, 3, 4, 5)),
    "like is case-sensitive on both": ([r("Source", "name", "like", "ngc%")], set()),
    "like underscore": ([r("RawDataPackage", "name", "like", "p_1")], p(1)),
    "like glob characters are literal": (
        [{"any": [r("RawDataPackage", "name", "like", "p0*"),
                  r("RawDataPackage", "name", "like", "p0[1]"),
                  r("RawDataPackage", "name", "like", "p0?")]}], set()),
    "is_null": ([r("ObsUnit", "line_id", "is_null")], p(8, 9, 10)),
    "is_null true explicit": ([r("InstrumentModule", "name", "is_null", True)], p(9)),
    "is_null false": ([r("Source", "name", "is_null", False)], p(1, 2, 3, 4, 5, 6, 7, 8, 10)),
    "enum any letter case": (
        [r("RawDataPackage", "state", "eq", "archived")], p(1, 2, 3, 5, 6, 8, 10)),
    "enum in": ([r("RawDataPackage", "state", "in", ["waiting", "Failed"])], p(4, 7)),
    "enum neq": ([r("RawDataPackage", "state", "neq", "ARCHIVED")], p(4, 7, 9)),
    # JSON paths: numbers as numbers, never strings; wrong JSON types never match
    "json eq number": ([meta(FREQ, "eq", 461.04)], p(1, 3, 4)),
    "json eq int matches stored float": ([meta(FREQ, "eq", 1000)], p(10)),
    "json eq string only matches strings": ([meta(FREQ, "eq", "461.04")], p(6)),
    "json neq": ([meta(FREQ, "neq", 461.04)], p(2, 5, 8, 10)),
    "json gt": ([meta(FREQ, "gt", 461.04)], p(5, 8, 10)),
    "json gte": ([meta(FREQ, "gte", 461.04)], p(1, 3, 4, 5, 8, 10)),
    "json lt": ([meta(FREQ, "lt", 400)], p(2)),
    "json lte": ([meta(FREQ, "lte", 350)], p(2)),
    "json gt skips a string where SQLite would sort it high": (
        [meta("weather.tau", "gt", 0)], p(1, 3, 5)),
    "json string comparison skips numbers": ([meta("weather.tau", "lt", "z")], p(8)),
    "json string gt": ([meta("quality", "gt", "bad")], p(1, 2, 10)),
    "json in numbers": ([meta(FREQ, "in", [350, 850])], p(2, 8)),
    "json not_in strings": ([meta("quality", "not_in", ["good"])], p(3, 10)),
    "json between": ([meta("weather.tau", "between", [0.05, 0.1])], p(1, 5)),
    "json like": ([meta("quality", "like", "good%")], p(1, 2, 10)),
    "json like with escaped underscore": ([meta("quality", "like", "good\\_%")], p(10)),
    "json is_null: missing or null": ([meta(FREQ, "is_null")], p(7, 9)),
    "json is_null false": ([meta("weather.tau", "is_null", False)], p(1, 3, 5, 8)),
    "json bool eq": ([meta("calibrated", "eq", True)], p(1)),
    "json bool neq": ([meta("calibrated", "neq", True)], p(3)),
    "json bool in": ([meta("calibrated", "in", [True, False])], p(1, 3)),
    "json array index": ([meta("tags[0]", "eq", "deep")], p(1)),
    "json nested key": ([meta("observation.lo_ghz", "gte", 455)], p(1)),
    # compositions
    "top-level list is AND": (
        [NGC253, r("RawDataPackage", "state", "eq", "ARCHIVED"),
         {"not": r("InstrumentModule", "name", "eq", "CHAI")}], p(2)),
    "any": ([{"any": [r("Source", "name", "eq", "M82"),
                      r("InstrumentModule", "name", "eq", "PrimeCam")]}], p(2, 6, 7, 8, 10)),
    "all": ([{"all": [NGC253, r("ObsUnit", "line_id", "eq", "CI10")]}], p(5)),
    "not includes packages without the value": ([{"not": NGC253}], p(6, 7, 8, 9, 10)),
    "not eq differs from neq": ([{"not": r("ObsUnit", "line_id", "eq", "CO43")}],
                                p(5, 8, 9, 10)),
    "not not": ([{"not": {"not": r("Source", "name", "eq", "M82")}}], p(6, 7)),
    "nested any/all/not": (
        [{"any": [
            {"all": [NGC253, {"not": r("RawDataPackage", "state", "eq", "archived")}]},
            {"not": {"any": [meta(FREQ, "gte", 400), meta(FREQ, "is_null")]}},
        ]}], p(2, 4, 6)),
    "no rules: everything": ([], p(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_operator(matching, case: str) -> None:
    rules, expected = CASES[case]
    assert matching(rules) == expected


def test_seed_example_chai_ngc253_co43_archived(matching) -> None:
    assert matching(SEED_CHAI_NGC253_CO43) == p(1, 3)


def test_instrument_module_scopes_the_grouping(matching, world) -> None:
    assert matching([], instrument_module_id=world.modules["CHAI"]) == p(1, 3, 4, 5, 6, 7)
    assert matching([NGC253], instrument_module_id=world.modules["PrimeCam"]) == p(2)


def test_bad_rules_raise_before_querying(session) -> None:
    from ccat_assets.grouping import resolve_subgroups

    with pytest.raises(GroupingError) as caught:
        resolve_subgroups(session, filter_rules=[r("Source", "nam", "eq", "x"), {"any": []}],
                          group_by=["sourc"])
    assert caught.value.errors == [
        "filter_rules[0].column: 'nam' is not a column of Source; did you mean 'name'?",
        "filter_rules[1].any: needs at least one rule ('any' of nothing is ambiguous)",
        "group_by[0]: unknown dimension 'sourc'; did you mean 'source'?",
    ]
