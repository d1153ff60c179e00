"""Dagster's staleness ("unsynced" in the UI) agrees with the gap rule, on both databases.

Each step asset's code version is what the input fingerprint covers of the step itself (its
version token and config hash), so after a config change or a new exact pin, Dagster's
staleness resolver marks a materialized partition stale with a code-version cause exactly
when ``ccat-wm gaps`` reprocesses it for its config or version, and fresh where gaps says up
to date. Real definitions built from the applied spec, real runs on the local backend, and
Dagster's own ``CachingStaleStatusResolver``. Across a switch of version policy the two
differ (documented in docs/automation.md); the last test pins that behaviour and its cure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.definitions.data_version import StaleCauseCategory, StaleStatus

from ccat_assets.definitions import load_definitions
from tests.factories import pipeline_spec
from tests.gaps.gapkit import (
    CODE_CAUSE,
    PIPELINE,
    Cause,
    apply_versions,
    ccat,
    ingest,
    map_key,
    materialize,
    scan_key,
    staleness,
)

SCANS = [("scan-001", "NGC253", "CO43"), ("scan-002", "NGC253", "CO43"),
         ("scan-003", "ORION", "CII")]
CALIBRATE = [scan_key(scan) for scan, _, _ in SCANS]
GRID = [map_key("NGC253", "CO43"), map_key("ORION", "CII")]
PAIRS = [("calibrate", k) for k in CALIBRATE] + [("grid", k) for k in GRID]
MANUAL = {"type": "MANUAL"}
V11 = ["1.0.0", "1.1.0"]
#: The gaps a change of the step itself makes, which its code version must mark.
CODE_GAPS = {"config_changed", "version_changed"}


def exact(version: str) -> dict[str, Any]:
    return {"version_policy": "exact", "pinned_version": version}


def new_config(tmp_path: Path, tag: str) -> dict[str, Any]:
    config = pipeline_spec(tmp_path / "processing")["pipelines"][0]["steps"][0]["config"]
    return {"config": {**config, "parameters": {"tag": tag}}}


def gaps() -> dict[tuple[str, str], dict[str, Any]]:
    """Every pair's decision as ``ccat-wm gaps --json --all`` shows it."""
    return {(r["step"], r["key"]): r for r in json.loads(ccat("gaps", PIPELINE, "--json",
                                                                "--all"))}


def pair_staleness(instance: dg.DagsterInstance, pairs: list[tuple[str, str]] = PAIRS,
          ) -> dict[tuple[str, str], tuple[StaleStatus, set[Cause]]]:
    """Each pair's stale status and causes for the definitions of the ops-db of now."""
    found = staleness(load_definitions(), instance,
                      [(dg.AssetKey(["ccat", PIPELINE, step]), key) for step, key in pairs])
    return {(asset.path[-1], key): value for (asset, key), value in found.items()}


def materialize_all(instance: dg.DagsterInstance) -> None:
    defs = load_definitions()
    for step, key in PAIRS:
        assert materialize(defs, instance, step, key).success


def scope(step: str, key: str) -> set[str]:
    """The upstream sub-groups gap evaluation reads for a pair (``gaps.upstream_scope``)."""
    if step == "calibrate":
        return set()
    return {scan_key(scan) for scan, source, line in SCANS if map_key(source, line) == key}


def assert_agrees(instance: dg.DagsterInstance) -> dict[tuple[str, str], str]:
    """Dagster's staleness against ``ccat-wm gaps``, pair by pair; returns each pair's reason.

    - a code-version cause exactly where gaps names a config or version gap;
    - where gaps says up to date, fresh. Across grains the dependency is declared with
      ``AllPartitionMapping``, so Dagster also marks a map when a scan outside its scope got
      new data: the only cause allowed there is such a data cause (docs/automation.md).
    """
    decisions = gaps()
    found = pair_staleness(instance)
    for pair in PAIRS:
        status, causes = found[pair]
        decision = decisions[pair]
        gap = decision["reason"] if decision["decision"] == "fire" else decision[
            "details"].get("gap")
        assert (CODE_CAUSE in causes) == (gap in CODE_GAPS), (pair, decision, causes)
        if gap in CODE_GAPS and not scope(*pair):
            assert (status, causes) == (StaleStatus.STALE, {CODE_CAUSE}), pair
        if decision["reason"] == "up_to_date":
            outside = {c for c in causes if c[0] == StaleCauseCategory.DATA
                       and c[2] not in scope(*pair)}
            assert causes == outside, (pair, causes)
            assert status == (StaleStatus.STALE if outside else StaleStatus.FRESH), pair
    return {pair: d["reason"] for pair, d in decisions.items()}


def test_a_config_change_marks_exactly_the_pairs_gaps_reprocesses(
        served_env: Path, tmp_path: Path) -> None:
    apply_versions(tmp_path, V11, trigger=MANUAL, **exact("1.0.0"))
    ingest(tmp_path, SCANS)
    with dg.instance_for_test() as instance:
        materialize_all(instance)
        reasons = assert_agrees(instance)
        assert set(reasons.values()) == {"up_to_date"}

        apply_versions(tmp_path, V11, trigger=MANUAL, **exact("1.0.0"),
                       **new_config(tmp_path, "v2"))
        reasons = assert_agrees(instance)
        assert [reasons[("calibrate", k)] for k in CALIBRATE] == ["config_changed"] * 3
        # the maps wait for their scans; nothing of theirs changed, so they are not marked
        assert [reasons[("grid", k)] for k in GRID] == ["upstream_incomplete"] * 2
        found = pair_staleness(instance)
        assert [found[("grid", k)] for k in GRID] == [(StaleStatus.FRESH, set())] * 2

        # one scan reduced with the new config: only that one is in sync
        assert materialize(load_definitions(), instance, "calibrate", CALIBRATE[0]).success
        reasons = assert_agrees(instance)
        assert [reasons[("calibrate", k)] for k in CALIBRATE] == [
            "up_to_date", "config_changed", "config_changed"]

        # the old config back: the two never rerun are in sync again, the rerun one is not
        apply_versions(tmp_path, V11, trigger=MANUAL, **exact("1.0.0"))
        reasons = assert_agrees(instance)
        assert [reasons[("calibrate", k)] for k in CALIBRATE] == [
            "config_changed", "up_to_date", "up_to_date"]


def test_a_new_exact_pin_marks_the_pairs_built_with_the_old_version(
        served_env: Path, tmp_path: Path) -> None:
    apply_versions(tmp_path, V11, trigger=MANUAL, **exact("1.0.0"))
    ingest(tmp_path, SCANS)
    with dg.instance_for_test() as instance:
        materialize_all(instance)
        apply_versions(tmp_path, V11, trigger=MANUAL, **exact("1.1.0"))
        reasons = assert_agrees(instance)
        assert [reasons[("calibrate", k)] for k in CALIBRATE] == ["version_changed"] * 3

        assert materialize(load_definitions(), instance, "calibrate", CALIBRATE[1]).success
        apply_versions(tmp_path, V11, trigger=MANUAL, **exact("1.0.0"))  # the pin back
        reasons = assert_agrees(instance)
        assert [reasons[("calibrate", k)] for k in CALIBRATE] == [
            "up_to_date", "version_changed", "up_to_date"]


def test_a_policy_switch_marks_up_to_date_pairs_until_they_are_reported_again(
        served_env: Path, tmp_path: Path) -> None:
    """The documented difference: ``compatible`` -> ``exact`` on the version everything was
    built with reprocesses nothing, but the code version's token changes, so Dagster marks
    every partition; materializing them reports the completed runs again (nothing runs)
    under the new code version, and the marks go."""
    apply_versions(tmp_path, ["1.0.0"], trigger=MANUAL, version_policy="compatible")
    ingest(tmp_path, SCANS[:1])
    pair = ("calibrate", CALIBRATE[0])
    with dg.instance_for_test() as instance:
        assert materialize(load_definitions(), instance, *pair).success
        apply_versions(tmp_path, ["1.0.0"], trigger=MANUAL, **exact("1.0.0"))
        assert gaps()[pair]["reason"] == "up_to_date"
        assert pair_staleness(instance, [pair])[pair] == (
            StaleStatus.STALE, {CODE_CAUSE})

        again = materialize(load_definitions(), instance, *pair)
        assert again.success
        event = instance.get_latest_materialization_event(dg.AssetKey(["ccat", PIPELINE,
                                                                       "calibrate"]))
        assert "Nothing ran" in event.asset_materialization.metadata["reused_run"].value
        assert pair_staleness(instance, [pair])[pair] == (
            StaleStatus.FRESH, set())
