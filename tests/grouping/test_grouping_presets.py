"""Presets: shipped YAML templates, loaded as rows, expanded into groupings that resolve."""

from __future__ import annotations

import pytest

from ccat_assets.grouping import (
    GroupingError,
    expand_preset,
    get_preset,
    load_presets,
    read_presets,
    resolve_subgroups,
    validate_filter_rules,
    validate_group_by,
)
from ccat_assets.grouping.presets import PresetTemplate, check_preset

SAMPLE_PARAMS = {
    "source_line_instrument": {"source": "NGC253", "line": "CO43", "instrument_module": "CHAI"},
    "source_instrument": {"source": "NGC253", "instrument_module": "CHAI"},
    "program_instrument": {"observing_program": "Nearby Galaxies", "instrument_module": "CHAI"},
    "instrument_date_range": {"instrument_module": "CHAI", "start": "2024-05-02",
                              "end": "2024-05-03T00:00:00Z"},
}


def test_every_shipped_preset_expands_to_valid_rules() -> None:
    presets = read_presets()
    assert {p.name for p in presets} == set(SAMPLE_PARAMS)
    for preset in presets:
        spec = expand_preset(preset, SAMPLE_PARAMS[preset.name])
        assert validate_filter_rules(spec["filter_rules"]) == []
        assert validate_group_by(spec.get("group_by", [])) == []


def test_expand_source_line_instrument() -> None:
    [preset] = [p for p in read_presets() if p.name == "source_line_instrument"]
    assert expand_preset(preset, SAMPLE_PARAMS[preset.name]) == {
        "name": "source_line_instrument-NGC253-CO43-CHAI",
        "filter_rules": [
            {"table": "Source", "column": "name", "operator": "eq", "value": "NGC253"},
            {"table": "ObsUnit", "column": "line_id", "operator": "eq", "value": "CO43"},
            {"table": "InstrumentModule", "column": "name", "operator": "eq", "value": "CHAI"},
            {"table": "RawDataPackage", "column": "state", "operator": "eq",
             "value": "ARCHIVED"},
        ],
        "group_by": ["executed_obs_unit"],
    }
    named = expand_preset(preset, {**SAMPLE_PARAMS[preset.name], "name": "chai-ngc253"})
    assert named["name"] == "chai-ngc253"


def test_missing_and_unknown_parameters_are_named() -> None:
    [preset] = [p for p in read_presets() if p.name == "source_line_instrument"]
    with pytest.raises(GroupingError) as caught:
        expand_preset(preset, {"source": "NGC253", "lines": "CO43"})
    assert caught.value.errors == [
        "parameters.line: missing; preset 'source_line_instrument' needs source, line, "
        "instrument_module",
        "parameters.instrument_module: missing; preset 'source_line_instrument' needs source, "
        "line, instrument_module",
        "parameters.lines: unknown parameter of preset 'source_line_instrument'; did you mean "
        "'line'?",
    ]


def test_parameter_types_follow_the_placeholder() -> None:
    template = PresetTemplate(
        name="freq", description=None, parameters=["low", "high", "sources", "prefix"],
        filter_rules_template=[
            {"table": "RawDataPackage", "column": "metadata", "json_path": "observation.f",
             "operator": "between", "value": ["{low}", "{high}"]},
            {"table": "Source", "column": "name", "operator": "in", "value": "{sources}"},
            {"table": "ObsUnit", "column": "name", "operator": "like",
             "value": "{prefix}-{{x}}%"},
        ])
    spec = expand_preset(template, {"low": 400, "high": 500.5, "sources": ["A", "B"],
                                    "prefix": "ou"})
    assert [rule["value"] for rule in spec["filter_rules"]] == [
        [400, 500.5], ["A", "B"], "ou-{x}%"]
    with pytest.raises(GroupingError) as caught:
        expand_preset(template, {"low": "x", "high": 500, "sources": "A", "prefix": "ou"})
    assert caught.value.errors[0].startswith("filter_rules[0].value: ")
    with pytest.raises(GroupingError, match=r"parameters\.prefix: is written inside text"):
        expand_preset(template, {"low": 1, "high": 2, "sources": ["A"], "prefix": ["x"]})


def test_bad_preset_documents_are_refused() -> None:
    assert check_preset({
        "name": "bad name", "parameters": ["a", "b"], "group_by": ["sourc"], "extra": 1,
        "filter_rules": [{"table": "Source", "column": "name", "operator": "eq",
                          "value": "{a}{c}"}],
    }, "presets/bad.yaml") == [
        "presets/bad.yaml.extra: unknown field",
        "presets/bad.yaml.name: 'bad name' is not a valid preset name",
        "presets/bad.yaml.filter_rules: placeholder {c} is not a declared parameter",
        "presets/bad.yaml.parameters: 'b' is never used in filter_rules",
        "presets/bad.yaml.group_by[0]: unknown dimension 'sourc'; did you mean 'source'?",
    ]


def test_load_presets_is_idempotent_and_expands_from_rows(session, world) -> None:
    first = load_presets(session)
    again = load_presets(session)
    assert [row.id for row in first] == [row.id for row in again]
    row = get_preset(session, "source_line_instrument")
    assert row.parameters == ["source", "line", "instrument_module"]
    spec = expand_preset(row, SAMPLE_PARAMS["source_line_instrument"])
    found = resolve_subgroups(session, filter_rules=spec["filter_rules"],
                              group_by=spec["group_by"])
    assert {s.key: world.names(s.raw_data_package_ids) for s in found} == {
        "executed_obs_unit=s1": {"p01"}, "executed_obs_unit=s2": {"p03"}}
    with pytest.raises(GroupingError, match="did you mean 'source_instrument'"):
        get_preset(session, "source_instrumnt")
