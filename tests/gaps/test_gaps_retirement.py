"""Retiring fully reduced sub-groups from the partition sets (docs/scale.md): the pure rule,
then the gap sensor, ``ccat-wm check``, ``partitions sync`` and a run bringing keys back, on
both databases with real materializations."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from ccat_assets.automation.gaps import Decision, PipelineState, Reason
from ccat_assets.automation.retirement import retirable_keys
from ccat_assets.cli import cli
from ccat_assets.consistency.snapshot import check_pipelines
from ccat_assets.definitions import load_definitions
from ccat_assets.opsdb.retired import retired_keys
from ccat_assets.opsdb.session import session_scope
from ccat_assets.settings import get_settings
from sensors.retire import forget_passes
from tests.factories import reduced_step
from tests.gaps.gapkit import (
    PIPELINE,
    ccat,
    fired,
    ingest,
    map_key,
    materialize,
    run_requests,
    scan_key,
    tick,
)

# --- the rule, no database ----------------------------------------------------------------

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
GRACE = dt.timedelta(days=30)
LATER = T0 + GRACE + dt.timedelta(seconds=1)
SCAN_PACKAGES = {"scan=s1": (1, 2), "scan=s2": (3,), "scan=s3": (4,)}
MAP_PACKAGES = {"source=a": (1, 2, 3), "source=b": (4,)}


def _world(finished: dt.datetime = T0) -> PipelineState:
    return PipelineState(name="p", priority=0, package_keys={}, steps=(
        reduced_step("calibrate", ("scan",), SCAN_PACKAGES, dict.fromkeys(SCAN_PACKAGES, finished)),
        reduced_step("map", ("source",), MAP_PACKAGES, dict.fromkeys(MAP_PACKAGES, finished))))


def _decisions(**not_done: Reason) -> list[Decision]:
    """Every pair up to date except those named ``<step>__<key value>``."""
    out = []
    for step, keys in (("calibrate", SCAN_PACKAGES), ("map", MAP_PACKAGES)):
        for key in keys:
            reason = not_done.get(f"{step}__{key.split('=')[1]}", Reason.UP_TO_DATE)
            out.append(Decision(step=step, key=key, fire=False, reason=reason))
    return out


def test_everything_reduced_long_enough_ago_is_retirable() -> None:
    assert retirable_keys(_world(), _decisions(), now=LATER, grace=GRACE) == {
        ("scan",): set(SCAN_PACKAGES), ("source",): set(MAP_PACKAGES)}


def test_nothing_is_retirable_within_the_grace_period() -> None:
    soon = T0 + GRACE - dt.timedelta(seconds=1)
    assert retirable_keys(_world(), _decisions(), now=soon, grace=GRACE) == {
        ("scan",): set(), ("source",): set()}


@pytest.mark.parametrize("reason", [Reason.IN_FLIGHT, Reason.INPUTS_CHANGED,
                                    Reason.RETRIES_EXHAUSTED, Reason.COOLDOWN,
                                    Reason.VERSION_CHANGED, Reason.UPSTREAM_INCOMPLETE])
def test_unfinished_work_keeps_the_sub_group_and_everything_sharing_its_data(
        reason: Reason) -> None:
    # scan s2 is not done: s2 stays, and so does the map of its source (a); the map keeps s1
    # (same source) only through its own state, which is done: s1 goes
    found = retirable_keys(_world(), _decisions(calibrate__s2=reason), now=LATER, grace=GRACE)
    assert found == {("scan",): {"scan=s1", "scan=s3"}, ("source",): {"source=b"}}
    # the map of source a not done: every scan of it stays
    found = retirable_keys(_world(), _decisions(map__a=reason), now=LATER, grace=GRACE)
    assert found == {("scan",): {"scan=s3"}, ("source",): {"source=b"}}


def test_a_pair_without_a_decision_or_a_finish_time_is_not_retirable() -> None:
    decisions = [d for d in _decisions() if d.key != "scan=s3"]
    found = retirable_keys(_world(), decisions, now=LATER, grace=GRACE)
    assert found == {("scan",): {"scan=s1", "scan=s2"}, ("source",): {"source=a"}}
    state = _world()
    unknown = PipelineState(name="p", priority=0, package_keys={}, steps=(
        state.steps[0], reduced_step("map", ("source",), MAP_PACKAGES, {"source=a": T0})))
    found = retirable_keys(unknown, _decisions(), now=LATER, grace=GRACE)
    # the map of b stays; its scan may go: a map that is up to date is no unfinished work
    assert found == {("scan",): set(SCAN_PACKAGES), ("source",): {"source=a"}}


# --- the gap sensor and friends, both databases ---------------------------------------------

SCANS = [scan_key(s) for s in ("scan-001", "scan-002", "scan-003")]
NGC, ORION = map_key("NGC253", "CO43"), map_key("ORION", "CII")
SCAN_GRAIN, MAP_GRAIN = f"{PIPELINE}__executed_obs_unit", f"{PIPELINE}__source+line"


@pytest.fixture
def retiring(continuous: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Retirement after about a second (1e-5 days)."""
    monkeypatch.setenv("CCAT_WORKFLOW_MANAGER_RETIRE_AFTER_DAYS", "0.00001")
    get_settings.cache_clear()
    return continuous


def _reduce_all(defs: dg.Definitions, instance: dg.DagsterInstance,
                cursor: str | None = None) -> str | None:
    """Tick and run until nothing fires; returns the cursor."""
    for _ in range(5):
        result = tick(defs, instance, cursor)
        cursor = result.cursor
        if not fired(result):
            return cursor
        run_requests(defs, instance, result)
    raise AssertionError("the pipeline did not settle")


def _retired() -> dict[str, set[str]]:
    with session_scope() as session:
        return retired_keys(session, [SCAN_GRAIN, MAP_GRAIN])


def _partitions(instance: dg.DagsterInstance) -> dict[str, set[str]]:
    return {name: set(instance.get_dynamic_partitions(name)) for name in (SCAN_GRAIN, MAP_GRAIN)}


def _check(instance: dg.DagsterInstance) -> list[str]:
    with session_scope() as session:
        return [f"{f.kind} {f.step} {f.key}" for f in check_pipelines(instance, session)]


def test_reduced_sub_groups_leave_the_partitions_and_come_back_when_worked_on(
        retiring: Path) -> None:
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        cursor = _reduce_all(defs, instance)
        assert _partitions(instance) == {SCAN_GRAIN: set(SCANS), MAP_GRAIN: {NGC, ORION}}
        time.sleep(1.0)
        forget_passes()  # the pass ran at the first tick; do not wait CHECK_SECONDS
        result = tick(defs, instance, cursor)
        assert _partitions(instance) == {SCAN_GRAIN: set(), MAP_GRAIN: set()}
        assert _retired() == {SCAN_GRAIN: set(SCANS), MAP_GRAIN: {NGC, ORION}}
        # the two records still agree: a retired key is not "missing", its history stays
        assert _check(instance) == []
        # registration paths leave retired keys out: the next tick, and a sync by hand
        tick(defs, instance, result.cursor)
        assert "0 new partition(s)" in ccat("partitions", "sync", PIPELINE)
        assert _partitions(instance) == {SCAN_GRAIN: set(), MAP_GRAIN: set()}

        # a new scan of NGC253 brings back its map (it has work again), not the other scans
        ingest(retiring, [("scan-004", "NGC253", "CO43")], night="2026-11-02")
        cursor = _reduce_all(defs, instance, result.cursor)
        new = scan_key("scan-004")
        assert _partitions(instance) == {SCAN_GRAIN: {new}, MAP_GRAIN: {NGC}}
        assert _retired() == {SCAN_GRAIN: set(SCANS), MAP_GRAIN: {ORION}}
        assert _check(instance) == []


def test_a_person_brings_keys_back(retiring: Path) -> None:
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        cursor = _reduce_all(defs, instance)
        time.sleep(1.0)
        forget_passes()
        tick(defs, instance, cursor)
        assert _partitions(instance) == {SCAN_GRAIN: set(), MAP_GRAIN: set()}
        runner = CliRunner()
        # by key
        out = ccat("partitions", "sync", PIPELINE, "--key", SCANS[0])
        assert f"{SCAN_GRAIN}: 1 new partition(s) (1 of them retired before)" in out
        assert _retired()[SCAN_GRAIN] == set(SCANS[1:])
        # a key that is no sub-group is refused, naming it, and nothing changes
        refused = runner.invoke(cli, ["partitions", "sync", PIPELINE, "--key", "scan=nope"])
        assert refused.exit_code == 2 and "'scan=nope'" in refused.output
        # a run of a retired key (launchpad, backfill) forgets its retirement
        assert materialize(defs, instance, "calibrate", SCANS[1]).success
        assert _retired()[SCAN_GRAIN] == {SCANS[2]}
        # every retired key at once
        out = ccat("partitions", "sync", PIPELINE, "--retired")
        assert _retired() == {SCAN_GRAIN: set(), MAP_GRAIN: set()}
        assert _partitions(instance) == {SCAN_GRAIN: set(SCANS), MAP_GRAIN: {NGC, ORION}}
        assert _check(instance) == []


def test_a_tick_retires_at_most_its_budget(retiring: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCAT_WORKFLOW_MANAGER_RETIRE_MAX_PER_TICK", "2")
    get_settings.cache_clear()
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        cursor = _reduce_all(defs, instance)
        time.sleep(1.0)
        forget_passes()
        counts = []
        for _ in range(4):
            before = sum(len(keys) for keys in _retired().values())
            cursor = tick(defs, instance, cursor).cursor
            counts.append(sum(len(keys) for keys in _retired().values()) - before)
        # 5 keys, 2 a tick; a pass that used its whole budget runs again at the next tick,
        # the one that found less waits CHECK_SECONDS
        assert counts == [2, 2, 1, 0]
        assert _partitions(instance) == {SCAN_GRAIN: set(), MAP_GRAIN: set()}
