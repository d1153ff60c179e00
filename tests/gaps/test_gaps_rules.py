"""The gap rule, table by table: every reason, with an injected clock, no database.

The world: ``calibrate`` per scan (s1 = packages 1+2, s2 = package 3) feeding ``grid`` over
all data. Expected fingerprints are computed here from their components with
``fingerprint.input_fingerprint``, independently of the code under test.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from ccat_assets.automation import gaps
from ccat_assets.automation.fingerprint import input_fingerprint, version_token
from ccat_assets.automation.gaps import (
    CompletedRun,
    Decision,
    PipelineState,
    Reason,
    StepState,
    evaluate,
    next_wake,
    runs_to_request,
    with_in_flight,
)
from ccat_assets.grouping import SubGroup
from ccat_assets.opsdb.enums import VersionPolicy

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
NOW = T0 + dt.timedelta(hours=1)
CHECKSUMS = {1: "sha256:p1", 2: "sha256:p2", 3: "sha256:p3"}
SCANS = {"scan=s1": (1, 2), "scan=s2": (3,)}
COMPATIBLE, EXACT = VersionPolicy.COMPATIBLE, VersionPolicy.EXACT
V1 = version_token(COMPATIBLE, "1.0.0")
PRODUCTS = {"scan=s1": ((101, "sha256:a"), (102, "sha256:b")), "scan=s2": ((103, "sha256:c"),)}


def subgroup(key: str, ids: tuple[int, ...], newest: dt.datetime = T0,
             checksums: dict[int, str] = CHECKSUMS) -> SubGroup:
    return SubGroup(key=key, dimensions={}, raw_data_package_ids=ids,
                    package_checksums=tuple(checksums[i] for i in ids), newest_input_at=newest)


def fp(ids: tuple[int, ...], *, config: str = "cfg", version: str = V1,
       upstream: tuple[tuple[int, str], ...] = (), checksums: dict[int, str] = CHECKSUMS) -> str:
    return input_fingerprint(packages=[(i, checksums[i]) for i in ids],
                             upstream_products=upstream, config_hash=config, version=version)


def done(fingerprint: str, *, run_id: int = 1, config: str = "cfg", used: str = "1.0.0",
         finished: dt.datetime = T0, products: tuple[tuple[int, str], ...] = ()) -> CompletedRun:
    return CompletedRun(run_id=run_id, fingerprint=fingerprint, config_hash=config,
                        version=used, finished_at=finished, products=products)


def calibrate(**changes: Any) -> StepState:
    step = StepState(
        name="calibrate", group_by=("scan",), depends_on=(), cooldown_seconds=0,
        max_retries=1, schedule=None, config_hash="cfg", version_policy=COMPATIBLE,
        version="1.0.0",
        subgroups={k: subgroup(k, ids) for k, ids in SCANS.items()})
    return dataclasses.replace(step, **changes)


def calibrate_done(**changes: Any) -> StepState:
    """Every scan calibrated with its current inputs."""
    completed = {k: done(fp(ids), run_id=i, products=PRODUCTS[k])
                 for i, (k, ids) in enumerate(SCANS.items(), start=1)}
    return calibrate(**{"completed": completed, **changes})


def grid(**changes: Any) -> StepState:
    step = StepState(
        name="grid", group_by=(), depends_on=("calibrate",), cooldown_seconds=0, max_retries=0,
        schedule=None, config_hash="cfg-grid", version_policy=COMPATIBLE, version="1.0.0",
        subgroups={"all": subgroup("all", (1, 2, 3))})
    return dataclasses.replace(step, **changes)


def world(*steps: StepState) -> PipelineState:
    return PipelineState(name="p", priority=0, steps=steps,
                         package_keys={("scan",): {1: "scan=s1", 2: "scan=s1", 3: "scan=s2"}})


def decide(state: PipelineState, step: str, key: str, now: dt.datetime = NOW) -> Decision:
    return next(d for d in evaluate(state, now) if d.step == step and d.key == key)


GRID_UPSTREAM = PRODUCTS["scan=s1"] + PRODUCTS["scan=s2"]
GRID_FP = fp((1, 2, 3), config="cfg-grid", upstream=GRID_UPSTREAM)
NEW_CHECKSUMS = {**CHECKSUMS, 1: "sha256:p1-reprocessed"}

# (case, state, step, key, fire, reason, expected details subset)
CASES: list[tuple[str, PipelineState, str, str, bool, Reason, dict[str, Any]]] = [
    ("never run", world(calibrate()), "calibrate", "scan=s1", True, Reason.NO_COMPLETED_RUN, {}),
    ("same inputs", world(calibrate(completed={"scan=s1": done(fp((1, 2)))})),
     "calibrate", "scan=s1", False, Reason.UP_TO_DATE, {"run_id": 1}),
    ("package checksum changed",
     world(calibrate(completed={"scan=s1": done(fp((1, 2), checksums=NEW_CHECKSUMS))})),
     "calibrate", "scan=s1", True, Reason.INPUTS_CHANGED, {"changed": ["inputs"]}),
    ("package added", world(calibrate(completed={"scan=s1": done(fp((1,)))})),
     "calibrate", "scan=s1", True, Reason.INPUTS_CHANGED, {"changed": ["inputs"]}),
    ("config changed",
     world(calibrate(completed={"scan=s1": done(fp((1, 2), config="old"), config="old")})),
     "calibrate", "scan=s1", True, Reason.CONFIG_CHANGED, {"changed": ["config"]}),
    ("config and inputs changed",
     world(calibrate(completed={"scan=s1": done(fp((1,), config="old"), config="old")})),
     "calibrate", "scan=s1", True, Reason.CONFIG_CHANGED, {"changed": ["config", "inputs"]}),
    ("new major version (compatible)",
     world(calibrate(version="2.0.0",
                     completed={"scan=s1": done(fp((1, 2)))})),
     "calibrate", "scan=s1", True, Reason.VERSION_CHANGED, {"changed": ["version"]}),
    ("new minor version (compatible) does not reprocess",
     world(calibrate(version="1.4.2",
                     completed={"scan=s1": done(fp((1, 2)))})),
     "calibrate", "scan=s1", False, Reason.UP_TO_DATE, {}),
    ("new pin (exact)",
     world(calibrate(version_policy=EXACT, version="1.1.0",
                     completed={"scan=s1": done(fp((1, 2), version="exact:1.0.0"))})),
     "calibrate", "scan=s1", True, Reason.VERSION_CHANGED, {"changed": ["version"]}),
    ("policy compatible -> exact on the version it ran with",
     world(calibrate(version_policy=EXACT, completed={"scan=s1": done(fp((1, 2)))})),
     "calibrate", "scan=s1", False, Reason.UP_TO_DATE, {"run_id": 1}),
    ("policy exact -> compatible, same major",
     world(calibrate(version="1.3.0",
                     completed={"scan=s1": done(fp((1, 2), version="exact:1.0.0"))})),
     "calibrate", "scan=s1", False, Reason.UP_TO_DATE, {"run_id": 1}),
    ("policy compatible -> exact on the same version, package changed",
     world(calibrate(version_policy=EXACT, completed={"scan=s1": done(fp((1,)))})),
     "calibrate", "scan=s1", True, Reason.INPUTS_CHANGED, {"changed": ["inputs"]}),
    ("policy compatible -> exact on a new version, package changed",
     world(calibrate(version_policy=EXACT, version="1.1.0",
                     completed={"scan=s1": done(fp((1,)))})),
     "calibrate", "scan=s1", True, Reason.VERSION_CHANGED, {"changed": ["version", "inputs"]}),
    ("policy exact -> compatible, config changed",
     world(calibrate(completed={"scan=s1": done(fp((1, 2), config="old",
                                                   version="exact:1.0.0"), config="old")})),
     "calibrate", "scan=s1", True, Reason.CONFIG_CHANGED, {"changed": ["config"]}),
    ("no usable version",
     world(calibrate(version=None, version_problem="pins no version")),
     "calibrate", "scan=s1", False, Reason.NO_VERSION, {"problem": "pins no version"}),
    ("run in flight", world(calibrate(in_flight=frozenset({"scan=s1"}))),
     "calibrate", "scan=s1", False, Reason.IN_FLIGHT, {}),
    ("cooldown not over", world(calibrate(cooldown_seconds=5400)),
     "calibrate", "scan=s1", False, Reason.COOLDOWN, {"seconds_left": 1800.0}),
    ("cooldown over", world(calibrate(cooldown_seconds=3600)),
     "calibrate", "scan=s1", True, Reason.NO_COMPLETED_RUN, {}),
    ("failed once, one retry allowed",
     world(calibrate(failures={("scan=s1", fp((1, 2))): 1})),
     "calibrate", "scan=s1", True, Reason.NO_COMPLETED_RUN, {"retry": "1/1"}),
    ("retries exhausted", world(calibrate(failures={("scan=s1", fp((1, 2))): 2})),
     "calibrate", "scan=s1", False, Reason.RETRIES_EXHAUSTED, {"failures": 2, "max_retries": 1}),
    ("failures of other inputs do not count",
     world(calibrate(failures={("scan=s1", fp((1,))): 5})),
     "calibrate", "scan=s1", True, Reason.NO_COMPLETED_RUN, {}),
    ("upstream never ran", world(calibrate(), grid()),
     "grid", "all", False, Reason.UPSTREAM_INCOMPLETE, {"waiting_on": 2}),
    ("upstream partly done",
     world(calibrate(completed={"scan=s1": done(fp((1, 2)), products=PRODUCTS["scan=s1"])}),
           grid()),
     "grid", "all", False, Reason.UPSTREAM_INCOMPLETE,
     {"waiting_on": 1, "examples": ["calibrate:scan=s2"]}),
    ("upstream up to date but re-running",
     world(calibrate_done(in_flight=frozenset({"scan=s2"})), grid()),
     "grid", "all", False, Reason.UPSTREAM_INCOMPLETE, {"examples": ["calibrate:scan=s2"]}),
    ("upstream has a gap (new package)",
     world(calibrate_done(subgroups={"scan=s1": subgroup("scan=s1", (1, 2)),
                                     "scan=s2": subgroup("scan=s2", (3,), checksums={
                                         3: "sha256:p3-new"})}), grid()),
     "grid", "all", False, Reason.UPSTREAM_INCOMPLETE, {"waiting_on": 1}),
    ("upstream complete", world(calibrate_done(), grid()),
     "grid", "all", True, Reason.NO_COMPLETED_RUN, {}),
    ("downstream up to date", world(calibrate_done(), grid(completed={"all": done(GRID_FP,
                                                                                config="cfg-grid")})),
     "grid", "all", False, Reason.UP_TO_DATE, {}),
    ("upstream re-ran: new products",
     world(calibrate_done(), grid(completed={"all": done(
         fp((1, 2, 3), config="cfg-grid", upstream=((99, "sha256:old"),)), config="cfg-grid")})),
     "grid", "all", True, Reason.INPUTS_CHANGED, {"changed": ["inputs"]}),
    ("downstream cooldown counts from the upstream finish",
     world(calibrate_done(completed={
         "scan=s1": done(fp((1, 2)), products=PRODUCTS["scan=s1"],
                         finished=NOW - dt.timedelta(minutes=10)),
         "scan=s2": done(fp((3,)), products=PRODUCTS["scan=s2"])}),
         grid(cooldown_seconds=3600)),
     "grid", "all", False, Reason.COOLDOWN, {"seconds_left": 3000.0}),
    ("schedule: no tick since the last run",
     world(calibrate(schedule="0 3 * * *", completed={"scan=s1": done(
         fp((1,)), finished=dt.datetime(2026, 11, 1, 4, 0, tzinfo=dt.UTC))})),
     "calibrate", "scan=s1", False, Reason.NOT_SCHEDULED,
     {"next_tick": "2026-11-02T03:00:00+00:00"}),
    ("schedule: a tick fell since the last run",
     world(calibrate(schedule="0 3 * * *", completed={"scan=s1": done(
         fp((1,)), finished=dt.datetime(2026, 10, 31, 4, 0, tzinfo=dt.UTC))})),
     "calibrate", "scan=s1", True, Reason.INPUTS_CHANGED, {}),
    ("schedule: never run waits for the first tick after the data",
     world(calibrate(schedule="0 3 * * *")),
     "calibrate", "scan=s1", False, Reason.NOT_SCHEDULED, {}),
]


@pytest.mark.parametrize(("case", "state", "step", "key", "fire", "reason", "details"), CASES,
                         ids=[c[0] for c in CASES])
def test_rule(case: str, state: PipelineState, step: str, key: str, fire: bool,
              reason: Reason, details: dict[str, Any]) -> None:
    decision = decide(state, step, key)
    assert (decision.fire, decision.reason) == (fire, reason), decision
    for name, value in details.items():
        assert decision.details.get(name) == value, decision.details


def test_fired_downstream_fingerprint_covers_the_upstream_products() -> None:
    decision = decide(world(calibrate_done(), grid()), "grid", "all")
    assert decision.fingerprint == GRID_FP
    assert decision.gap == Reason.NO_COMPLETED_RUN


def test_retry_is_counted_in_the_decision() -> None:
    state = world(calibrate(failures={("scan=s1", fp((1, 2))): 1}))
    decision = decide(state, "calibrate", "scan=s1")
    assert decision.attempt == 1
    assert decide(world(calibrate()), "calibrate", "scan=s1").attempt == 0


def test_waiting_pair_knows_its_gap_and_wake_time() -> None:
    decision = decide(world(calibrate(cooldown_seconds=5400)), "calibrate", "scan=s1")
    assert decision.gap == Reason.NO_COMPLETED_RUN
    assert decision.wake_at == T0 + dt.timedelta(seconds=5400)
    assert next_wake(evaluate(world(calibrate(cooldown_seconds=5400)), NOW)) == decision.wake_at
    assert next_wake(evaluate(world(calibrate()), NOW)) is None


def test_the_clock_ends_a_cooldown() -> None:
    state = world(calibrate(cooldown_seconds=5400))
    assert not decide(state, "calibrate", "scan=s1", now=NOW).fire
    assert decide(state, "calibrate", "scan=s1", now=T0 + dt.timedelta(seconds=5400)).fire


def test_with_in_flight_adds_queued_pairs() -> None:
    state = with_in_flight(world(calibrate()), {("calibrate", "scan=s2")})
    assert decide(state, "calibrate", "scan=s2").reason == Reason.IN_FLIGHT
    assert decide(state, "calibrate", "scan=s1").fire


def test_runs_to_request_oldest_gap_first_and_bounded() -> None:
    newer = subgroup("scan=s1", (1, 2), newest=T0 + dt.timedelta(minutes=5))
    state = world(calibrate(subgroups={"scan=s1": newer, "scan=s2": subgroup("scan=s2", (3,))}))
    decisions = evaluate(state, NOW)
    assert [d.key for d in runs_to_request(decisions, 10)] == ["scan=s2", "scan=s1"]
    assert [d.key for d in runs_to_request(decisions, 1)] == ["scan=s2"]
    waiting = [dataclasses.replace(d, fire=False) for d in decisions]
    assert runs_to_request(waiting, 10) == []


def test_memo_spares_rehashing_after_a_policy_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a switch every pair's fingerprint differs from its run's; judging that it is
    still current hashes again only when something changed."""
    switched = world(calibrate_done(version_policy=EXACT))
    memo: dict = {}
    first = evaluate(switched, NOW, memo)
    assert {d.reason for d in first} == {Reason.UP_TO_DATE}
    hashes: list[str] = []
    real = gaps.input_fingerprint
    monkeypatch.setattr(gaps, "input_fingerprint", lambda **kw: hashes.append("") or real(**kw))
    assert evaluate(switched, NOW, memo) == first
    assert hashes == []


def test_every_pair_gets_exactly_one_decision() -> None:
    decisions = evaluate(world(calibrate(), grid()), NOW)
    assert sorted((d.step, d.key) for d in decisions) == [
        ("calibrate", "scan=s1"), ("calibrate", "scan=s2"), ("grid", "all")]


def test_memo_reuses_only_unchanged_fingerprints() -> None:
    memo: dict = {}
    before = evaluate(world(calibrate()), NOW, memo)
    assert len(memo) == 2
    changed = world(calibrate(subgroups={
        "scan=s1": subgroup("scan=s1", (1, 2), checksums=NEW_CHECKSUMS),
        "scan=s2": subgroup("scan=s2", (3,))}))
    after = evaluate(changed, NOW, memo)
    assert after == evaluate(changed, NOW)  # the memo never changes an answer
    assert after[0].fingerprint == fp((1, 2), checksums=NEW_CHECKSUMS) != before[0].fingerprint
    assert after[1].fingerprint == before[1].fingerprint


def test_freed_intermediates_are_recomputed_only_when_a_consumer_needs_them() -> None:
    """Upstream runs whose products the janitor freed count as done for an up-to-date
    consumer; when the consumer has a gap, they are reduced again first and it waits."""
    evicted = calibrate_done()
    evicted = dataclasses.replace(evicted, completed={
        k: dataclasses.replace(r, evicted=True) for k, r in evicted.completed.items()})
    upstream = tuple(p for k in SCANS for p in PRODUCTS[k])
    grid_done = grid(completed={"all": done(fp((1, 2, 3), config="cfg-grid", upstream=upstream),
                                            run_id=9)})

    quiet = {(d.step, d.key): d.reason for d in evaluate(world(evicted, grid_done), NOW)}
    assert set(quiet.values()) == {Reason.UP_TO_DATE}

    needy = {(d.step, d.key): d for d in evaluate(world(evicted, grid()), NOW)}
    assert needy[("grid", "all")].reason == Reason.UPSTREAM_INCOMPLETE
    for key in SCANS:
        assert needy[("calibrate", key)].fire
        assert needy[("calibrate", key)].reason == Reason.NO_COMPLETED_RUN
