"""group_by dimensions, sub-group contents, the keys / package_ids filters and the preview."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from ccat_assets.grouping import (
    ALL_KEY,
    SubGroup,
    format_preview_table,
    preview_rows,
    resolve_subgroups,
    subgroup_key,
)
from ccat_assets.opsdb import DataGrouping

T0 = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)
NONE = subgroup_key(["x"], [None]).removeprefix("x=")  # how a missing value is keyed


def at(minutes: int) -> dt.datetime:
    """updated_at of package p<minutes + 1> in the test world."""
    return T0 + dt.timedelta(minutes=minutes)


def groups(session, world, group_by, rules=(), **kwargs) -> dict[str, set[str]]:
    found = resolve_subgroups(session, filter_rules=list(rules), group_by=group_by, **kwargs)
    assert [s.key for s in found] == sorted(s.key for s in found)
    return {s.key: world.names(s.raw_data_package_ids) for s in found}


def test_per_scan(session, world) -> None:
    assert groups(session, world, ["executed_obs_unit"]) == {
        "executed_obs_unit=s1": {"p01", "p02"},
        "executed_obs_unit=s2": {"p03", "p04"},
        "executed_obs_unit=s3": {"p05"},
        "executed_obs_unit=s4": {"p06", "p07"},
        "executed_obs_unit=s5": {"p08", "p10"},
        "executed_obs_unit=s6": {"p09"},
    }


def test_source_and_line_with_missing_values(session, world) -> None:
    assert groups(session, world, ["source", "line"]) == {
        "source=M82__line=CO43": {"p06", "p07"},
        "source=NGC253__line=CI10": {"p05"},
        "source=NGC253__line=CO43": {"p01", "p02", "p03", "p04"},
        f"source=SgrB2__line={NONE}": {"p08", "p10"},
        f"source={NONE}__line={NONE}": {"p09"},
    }


@pytest.mark.parametrize(("dim", "expected"), [
    ("obs_unit", {"obs_unit=ou-ngc253-co43": 4, "obs_unit=ou-ngc253-ci10": 1,
                  "obs_unit=ou-m82-co43": 2, "obs_unit=ou-sgrb2-cont": 2,
                  "obs_unit=ou-skydip": 1}),
    ("instrument_module", {"instrument_module=CHAI": 6, "instrument_module=PrimeCam": 3,
                           f"instrument_module={NONE}": 1}),
    ("observing_program", {subgroup_key(["observing_program"], ["Nearby Galaxies"]): 7,
                           subgroup_key(["observing_program"], ["Galactic Center"]): 2,
                           f"observing_program={NONE}": 1}),
    # s4 starts at 01:00+02:00, i.e. 2024-05-02 in UTC.
    ("obs_date", {"obs_date=2024-05-01": 2, "obs_date=2024-05-02": 5,
                  "obs_date=2024-05-04": 2, f"obs_date={NONE}": 1}),
    ("metadata.quality", {"metadata.quality=good": 2, "metadata.quality=bad": 1,
                          subgroup_key(["metadata.quality"], ["good_100%"]): 1,
                          f"metadata.quality={NONE}": 6}),
    ("metadata.calibrated", {"metadata.calibrated=true": 1, "metadata.calibrated=false": 1,
                             f"metadata.calibrated={NONE}": 8}),
])
def test_dimension(session, world, dim: str, expected: dict[str, int]) -> None:
    found = groups(session, world, [dim])
    assert {k: len(v) for k, v in found.items()} == expected


def test_json_values_equal_for_keys_make_one_subgroup(session, world) -> None:
    """461.04 (number) and "461.04" (string) key the same, so they are one sub-group."""
    found = resolve_subgroups(session, filter_rules=[], group_by=["metadata.observation."
                                                                  "frequency_ghz"])
    by_key = {s.key: s for s in found}
    merged = by_key["metadata.observation.frequency_ghz=461.04"]
    assert world.names(merged.raw_data_package_ids) == {"p01", "p03", "p04", "p06"}
    assert merged.dimensions == {"metadata.observation.frequency_ghz": 461.04}
    assert by_key["metadata.observation.frequency_ghz=1000"].dimensions == {
        "metadata.observation.frequency_ghz": 1000.0}
    assert by_key[f"metadata.observation.frequency_ghz={NONE}"].n_packages == 2


def test_subgroup_contents(session, world) -> None:
    [sub] = resolve_subgroups(session, filter_rules=[], group_by=["source", "line"],
                              keys=["source=NGC253__line=CO43"])
    ids = tuple(sorted(world.packages[n] for n in ("p01", "p02", "p03", "p04")))
    assert sub == SubGroup(
        key="source=NGC253__line=CO43",
        dimensions={"source": "NGC253", "line": "CO43"},
        raw_data_package_ids=ids,
        package_checksums=tuple(f"sha256:{world.names([i]).pop()}" for i in ids),
        newest_input_at=at(3),
    )
    assert sub.newest_input_at.tzinfo is not None
    assert sub.newest_input_at.utcoffset() == dt.timedelta(0)


def test_all_data_is_one_subgroup(session, world) -> None:
    [sub] = resolve_subgroups(session, filter_rules=[], group_by=[])
    assert (sub.key, sub.dimensions, sub.n_packages) == (ALL_KEY, {}, 10)
    assert sub.newest_input_at == at(9)


def test_nothing_matches_gives_no_subgroup(session) -> None:
    none = [{"table": "Source", "column": "name", "operator": "eq", "value": "nowhere"}]
    assert resolve_subgroups(session, filter_rules=none, group_by=[]) == []
    assert resolve_subgroups(session, filter_rules=none, group_by=["source"]) == []


def test_keys_keep_only_those_subgroups(session, world) -> None:
    def keys_of(group_by, keys):
        found = resolve_subgroups(session, filter_rules=[], group_by=group_by, keys=keys)
        return [s.key for s in found]

    assert keys_of(["executed_obs_unit"], ["executed_obs_unit=s2"]) == ["executed_obs_unit=s2"]
    hashed = f"source={NONE}__line={NONE}"
    wanted = ["source=NGC253__line=CI10", hashed, "source=Nowhere__line=CO43"]
    assert keys_of(["source", "line"], wanted) == sorted(wanted[:2])
    assert keys_of(["source", "line"], ["executed_obs_unit=s2", "source=NGC253"]) == []
    assert keys_of(["source"], []) == []
    assert keys_of([], [ALL_KEY]) == [ALL_KEY]
    assert keys_of(["metadata.quality"], ["metadata.quality=good"]) == ["metadata.quality=good"]


def test_package_ids_find_fine_subgroups_inside_a_coarse_one(session, world) -> None:
    [coarse] = resolve_subgroups(session, filter_rules=[], group_by=["source", "line"],
                                 keys=["source=NGC253__line=CO43"])
    fine = resolve_subgroups(session, filter_rules=[], group_by=["executed_obs_unit"],
                             package_ids=coarse.raw_data_package_ids)
    assert [s.key for s in fine] == ["executed_obs_unit=s1", "executed_obs_unit=s2"]


def test_package_ids_take_thousands_in_one_statement(session, world) -> None:
    wanted = [world.packages["p05"], world.packages["p09"]]
    ids = list(range(10_000_000, 10_005_000)) + wanted
    [sub] = resolve_subgroups(session, filter_rules=[], group_by=[], package_ids=ids)
    assert world.names(sub.raw_data_package_ids) == {"p05", "p09"}
    assert resolve_subgroups(session, filter_rules=[], group_by=[], package_ids=[]) == []


def _grouping(session, world, rules, module: str | None = None) -> DataGrouping:
    row = DataGrouping(name="preview-test", filter_rules=rules,
                       instrument_module_id=world.modules[module] if module else None)
    session.add(row)
    session.flush()
    return row


SEED = [
    {"table": "Source", "column": "name", "operator": "eq", "value": "NGC253"},
    {"table": "ObsUnit", "column": "line_id", "operator": "eq", "value": "CO43"},
    {"table": "RawDataPackage", "column": "state", "operator": "eq", "value": "archived"},
]


def test_preview_per_scan(session, world) -> None:
    rows = preview_rows(session, _grouping(session, world, SEED, "CHAI"), ["executed_obs_unit"])
    assert rows == [
        {"key": "executed_obs_unit=s1", "dimensions": {"executed_obs_unit": "s1"},
         "n_packages": 1, "newest_input_at": "2024-06-01T12:00:00+00:00"},
        {"key": "executed_obs_unit=s2", "dimensions": {"executed_obs_unit": "s2"},
         "n_packages": 1, "newest_input_at": "2024-06-01T12:02:00+00:00"},
    ]
    json.dumps(rows)


def test_preview_per_source_and_line(session, world) -> None:
    rules = [{"table": "RawDataPackage", "column": "state", "operator": "eq",
              "value": "ARCHIVED"}]
    rows = preview_rows(session, _grouping(session, world, rules), ["source", "line"])
    assert rows == [
        {"key": "source=M82__line=CO43", "dimensions": {"source": "M82", "line": "CO43"},
         "n_packages": 1, "newest_input_at": "2024-06-01T12:05:00+00:00"},
        {"key": "source=NGC253__line=CI10", "dimensions": {"source": "NGC253", "line": "CI10"},
         "n_packages": 1, "newest_input_at": "2024-06-01T12:04:00+00:00"},
        {"key": "source=NGC253__line=CO43", "dimensions": {"source": "NGC253", "line": "CO43"},
         "n_packages": 3, "newest_input_at": "2024-06-01T12:02:00+00:00"},
        {"key": f"source=SgrB2__line={NONE}", "dimensions": {"source": "SgrB2", "line": None},
         "n_packages": 2, "newest_input_at": "2024-06-01T12:09:00+00:00"},
    ]
    json.dumps(rows)


def test_preview_all_data_and_table(session, world) -> None:
    rows = preview_rows(session, _grouping(session, world, []), [])
    assert rows == [{"key": "all", "dimensions": {}, "n_packages": 10,
                     "newest_input_at": "2024-06-01T12:09:00+00:00"}]
    table = format_preview_table(rows).splitlines()
    assert table[0].split() == ["SUB-GROUP", "KEY", "PACKAGES", "NEWEST", "INPUT", "(UTC)"]
    assert table[1].split() == ["all", "10", "2024-06-01", "12:09:00"]
    assert table[-1] == "1 sub-group, 10 packages"
    assert "no sub-groups" in format_preview_table([])
