"""Bad rules and dimensions: every problem, each naming its position and field (no database)."""

from __future__ import annotations

import pytest

from ccat_assets.grouping import DIMENSIONS, validate_filter_rules, validate_group_by


def one(rule: object) -> str:
    [message] = validate_filter_rules([rule])
    return message


def src(**fields: object) -> dict[str, object]:
    return {"table": "Source", "column": "name", "operator": "eq", "value": "x", **fields}


def meta(**fields: object) -> dict[str, object]:
    return {"table": "RawDataPackage", "column": "metadata", "json_path": "a.b",
            "operator": "eq", "value": 1, **fields}


@pytest.mark.parametrize(("rule", "message"), [
    (src(table="Sorce"),
     "filter_rules[0].table: 'Sorce' is not a table a grouping can reach; did you mean "
     "'Source'?"),
    (src(table="DataProduct"),
     "filter_rules[0].table: 'DataProduct' is not a table a grouping can reach (tables: "
     "RawDataPackage, ExecutedObsUnit, ObsUnit, Source, ObservingProgram, InstrumentModule)"),
    (src(table="source"), "filter_rules[0].table: 'source' is not a table a grouping can "
                          "reach; did you mean 'Source'?"),
    ({"table": "RawDataPackage", "column": "frequncy", "operator": "eq", "value": 1},
     "filter_rules[0].column: 'frequncy' is not a column of RawDataPackage (columns: checksum, "
     "created_at, executed_obs_unit_id, id, instrument_module_id, metadata, name, "
     "relative_path, size_bytes, state, updated_at)"),
    (src(column="nmae"), "filter_rules[0].column: 'nmae' is not a column of Source; did you "
                         "mean 'name'?"),
    (src(operator="equals"), "filter_rules[0].operator: unknown operator 'equals' (operators: "
                             "eq, neq, gt, gte, lt, lte, in, not_in, like, between, is_null)"),
    (src(operator="not_inn"), "filter_rules[0].operator: unknown operator 'not_inn'; did you "
                              "mean 'not_in'?"),
    (src(operater="eq"), "filter_rules[0].operater: unknown field; did you mean 'operator'? "
                         "(fields: table, column, operator, value, json_path; or a "
                         "composition 'any', 'all', 'not')"),
    ({"table": "Source", "column": "name", "value": "x"},
     "filter_rules[0].operator: missing (one of: eq, neq, gt, gte, lt, lte, in, not_in, like, "
     "between, is_null)"),
    ({"table": "Source", "column": "name", "operator": "eq"},
     "filter_rules[0].value: missing: operator 'eq' needs a value"),
    (src(value=None), "filter_rules[0].value: operator 'eq' needs a value; to match a missing "
                      "value use operator 'is_null'"),
    (src(operator="in", value="NGC253"),
     "filter_rules[0].value: operator 'in' needs a non-empty list, got 'NGC253'"),
    (src(operator="not_in", value=[]),
     "filter_rules[0].value: operator 'not_in' needs a non-empty list, got list []"),
    (src(operator="gt", value=5),
     "filter_rules[0].value: operator 'gt' on string column Source.name needs a string, got "
     "int 5"),
    (src(operator="in", value=["a", 5]),
     "filter_rules[0].value: operator 'in' on string column Source.name needs a string, got "
     "int 5"),
    ({"table": "RawDataPackage", "column": "size_bytes", "operator": "like", "value": "1%"},
     "filter_rules[0].operator: 'like' applies to text only, not to number column "
     "RawDataPackage.size_bytes"),
    ({"table": "RawDataPackage", "column": "size_bytes", "operator": "eq", "value": "12"},
     "filter_rules[0].value: operator 'eq' on number column RawDataPackage.size_bytes needs a "
     "number, got '12'"),
    ({"table": "RawDataPackage", "column": "size_bytes", "operator": "eq", "value": True},
     "filter_rules[0].value: operator 'eq' on number column RawDataPackage.size_bytes needs a "
     "number, got bool True"),
    ({"table": "RawDataPackage", "column": "size_bytes", "operator": "eq", "value": 2**64},
     "filter_rules[0].value: operator 'eq' on number column RawDataPackage.size_bytes needs a "
     "finite number within 64 bits, got int 18446744073709551616"),
    ({"table": "RawDataPackage", "column": "state", "operator": "eq", "value": "done"},
     "filter_rules[0].value: 'done' is not a member of enum column RawDataPackage.state "
     "(members: WAITING, TRANSFERRING, ARCHIVED, FAILED; any letter case)"),
    ({"table": "RawDataPackage", "column": "state", "operator": "gt", "value": "ARCHIVED"},
     "filter_rules[0].operator: 'gt' does not apply to enum column RawDataPackage.state; use "
     "eq, neq, in or not_in"),
    ({"table": "ExecutedObsUnit", "column": "start_time", "operator": "gt", "value": "May 1"},
     "filter_rules[0].value: operator 'gt' on datetime column ExecutedObsUnit.start_time needs "
     "an ISO 8601 timestamp string such as '2024-05-01T00:00:00Z', got 'May 1'"),
    (src(operator="between", value=["a"]),
     "filter_rules[0].value: operator 'between' needs a list of two bounds [low, high], got "
     "1 items"),
    (src(operator="between", value=["z", "a"]),
     "filter_rules[0].value: 'between' bounds are reversed: 'z' > 'a'"),
    (src(operator="like", value="abc\\"),
     "filter_rules[0].value: a like pattern cannot end with a lone '\\' (the escape character; "
     "write '\\\\' for a backslash)"),
    (src(operator="is_null", value="yes"),
     "filter_rules[0].value: operator 'is_null' takes true, false or no value, got 'yes'"),
    (src(value="a\x00b"), "filter_rules[0].value: a string value cannot contain the NUL "
                          "character"),
    (src(json_path="a.b"),
     "filter_rules[0].json_path: column Source.name is not JSON; json_path applies only to "
     "ExecutedObsUnit.metadata, RawDataPackage.metadata"),
    ({"table": "RawDataPackage", "column": "metadata", "operator": "eq", "value": 1},
     "filter_rules[0].json_path: column RawDataPackage.metadata is JSON: give a json_path such "
     "as 'observation.frequency_ghz'"),
    (meta(json_path="a.b c"),
     "filter_rules[0].json_path: 'a.b c' segment 'b c' is not a key of letters, digits, '_' "
     "or '-' with optional [n] indexes (e.g. 'observation.frequency_ghz', 'tags[0]')"),
    (meta(operator="like", value=5),
     "filter_rules[0].value: 'like' needs a string pattern, got int 5"),
    (meta(value={"x": 1}),
     "filter_rules[0].value: operator 'eq' on JSON path 'a.b' of RawDataPackage.metadata needs "
     "a string, number or boolean (for a list, all of one type), got dict {'x': 1}"),
    (meta(operator="in", value=[1, "a"]),
     "filter_rules[0].value: operator 'in' on JSON path 'a.b' of RawDataPackage.metadata needs "
     "a string, number or boolean (for a list, all of one type), got list [1, 'a']"),
    (meta(operator="gt", value=True),
     "filter_rules[0].operator: 'gt' does not apply to JSON path 'a.b' of "
     "RawDataPackage.metadata compared as bool; use eq, neq, in or not_in"),
    ({"any": []}, "filter_rules[0].any: needs at least one rule ('any' of nothing is "
                  "ambiguous)"),
    ({"all": "x"}, "filter_rules[0].all: must be a list of rules, got 'x'"),
    ({"not": [src()]}, "filter_rules[0].not: needs one rule object (wrap several in {'all': "
                       "[...]}), got list [{'table': 'Source', 'column': 'name', 'operator': "
                       "'eq', ..."),
    ({"any": [src()], "not": src()}, "filter_rules[0]: a composition is an object with exactly "
                                     "one key ('any', 'all' or 'not'), got keys ['any', 'not']"),
    ("Source.name = x", "filter_rules[0]: a rule must be an object with table, column and "
                        "operator (or a composition 'any', 'all', 'not'), got 'Source.name = "
                        "x'"),
    ({"any": [src(), {"not": src(column="nam")}]},
     "filter_rules[0].any[1].not.column: 'nam' is not a column of Source; did you mean "
     "'name'?"),
])
def test_one_problem(rule: object, message: str) -> None:
    assert one(rule) == message


def test_every_problem_is_reported_at_once() -> None:
    errors = validate_filter_rules([
        src(),
        {"table": "Sorce", "column": "nme", "operator": "equals"},
        {"any": [src(), src(value=3)]},
    ], where="groupings.chai.filter_rules")
    assert errors == [
        "groupings.chai.filter_rules[1].table: 'Sorce' is not a table a grouping can reach; "
        "did you mean 'Source'?",
        "groupings.chai.filter_rules[1].operator: unknown operator 'equals' (operators: eq, "
        "neq, gt, gte, lt, lte, in, not_in, like, between, is_null)",
        "groupings.chai.filter_rules[2].any[1].value: operator 'eq' on string column "
        "Source.name needs a string, got int 3",
    ]


def test_top_level_must_be_a_list() -> None:
    assert validate_filter_rules(src()) == [
        "filter_rules: must be a list of rules (combined with AND), got dict {'table': "
        "'Source', 'column': 'name', 'operator': 'eq', '..."]


def test_nesting_and_size_are_bounded() -> None:
    deep: dict[str, object] = src()
    for _ in range(40):
        deep = {"not": deep}
    [message] = validate_filter_rules([deep])
    assert message.endswith("rules nest deeper than 16 levels")
    assert validate_filter_rules([src()] * 1001)[-1] == "filter_rules[1000]: more than 1000 rules"


def test_good_rules_have_no_problems() -> None:
    assert validate_filter_rules([
        src(), src(operator="is_null", value=False), src(operator="like", value="N%"),
        {"table": "ObsUnit", "column": "line_id", "operator": "is_null"},
        {"table": "RawDataPackage", "column": "meta", "json_path": "tags[0].x-y_z",
         "operator": "in", "value": ["a"]},
        {"table": "ExecutedObsUnit", "column": "start_time", "operator": "between",
         "value": ["2024-05-01", "2024-05-02T00:00:00+02:00"]},
        {"any": [{"all": [src()]}, {"not": src()}]},
    ]) == []


def test_group_by() -> None:
    assert validate_group_by([*DIMENSIONS, "metadata.observation.frequency_ghz"]) == []
    assert validate_group_by([]) == []
    assert validate_group_by(["sourc", 3, "line", "line", "metadata.a b", "meta.x"]) == [
        "group_by[0]: unknown dimension 'sourc'; did you mean 'source'?",
        "group_by[1]: a dimension name must be a string, got int 3",
        "group_by[3]: dimension 'line' is listed twice",
        "group_by[4]: JSON path 'a b' segment 'a b' is not a key of letters, digits, '_' or "
        "'-' with optional [n] indexes (e.g. 'observation.frequency_ghz', 'tags[0]')",
        "group_by[5]: unknown dimension 'meta.x' (dimensions: executed_obs_unit, obs_unit, "
        "source, line, instrument_module, observing_program, obs_date, metadata.<json path>)",
    ]
    assert validate_group_by("source", where="steps[a].group_by") == [
        "steps[a].group_by: must be a list of dimension names, got 'source'"]
