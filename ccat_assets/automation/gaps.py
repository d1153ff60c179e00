"""Gap evaluation: which (step, sub-group) pairs should run now, and why the others wait.

Pure: a :class:`PipelineState` (what the ops-db and Dagster say now) and a clock in, one
:class:`Decision` per pair out. No database, no Dagster, so every rule is a table-driven unit
test and ``ccat-wm gaps`` shows exactly what the sensor would do.

A pair has a gap when it has no completed run or its newest completed run is not current: its
config differs, the step's version policy does not accept its version, or its inputs (raw
packages, upstream products) differ; see :mod:`ccat_assets.automation.fingerprint`. A gap fires only
when every upstream pair in its scope is complete (no gap, nothing in flight), nothing is in
flight for the pair itself, the cooldown since the newest input change has passed, the
failures for this fingerprint are within ``max_retries``, and, for a step with a
``schedule``, a cron tick fell since its last completed run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from croniter import croniter

from ccat_assets.automation.fingerprint import (
    accepts,
    input_fingerprint,
    same_inputs,
    version_token,
)
from ccat_assets.grouping import SubGroup
from ccat_assets.opsdb.enums import VersionPolicy

#: Examples listed in a decision's details (the count is always complete).
MAX_EXAMPLES = 5


class Reason(enum.StrEnum):
    """Why a pair fires (the gap) or why it waits."""

    NO_COMPLETED_RUN = "no_completed_run"
    INPUTS_CHANGED = "inputs_changed"
    CONFIG_CHANGED = "config_changed"
    VERSION_CHANGED = "version_changed"
    UP_TO_DATE = "up_to_date"
    UPSTREAM_INCOMPLETE = "upstream_incomplete"
    IN_FLIGHT = "in_flight"
    COOLDOWN = "cooldown"
    RETRIES_EXHAUSTED = "retries_exhausted"
    NOT_SCHEDULED = "not_scheduled"
    NO_VERSION = "no_version"


#: Gap reasons in the order a decision names them when several components changed.
GAP_REASONS = (Reason.NO_COMPLETED_RUN, Reason.CONFIG_CHANGED, Reason.VERSION_CHANGED,
               Reason.INPUTS_CHANGED)


@dataclass(frozen=True)
class CompletedRun:
    """The newest COMPLETED run of a pair, with the fingerprint components it ran with."""

    run_id: int
    fingerprint: str
    config_hash: str
    #: The software version it ran with (not a token: the policy may have changed since).
    version: str
    finished_at: dt.datetime | None
    #: Its products except LOG, as (id, checksum): the upstream input of downstream steps.
    products: tuple[tuple[int, str], ...] = ()
    #: Some of its products were freed by the workspace janitor: a consumer that needs them
    #: must have them recomputed first.
    evicted: bool = False


@dataclass(frozen=True)
class StepState:
    """One step as gap evaluation sees it: its rules, its sub-groups and its runs."""

    name: str
    group_by: tuple[str, ...]
    depends_on: tuple[str, ...]
    cooldown_seconds: int
    max_retries: int
    schedule: str | None
    config_hash: str
    version_policy: VersionPolicy
    #: The software version a run would use now; None when there is none.
    version: str | None
    subgroups: Mapping[str, SubGroup]
    completed: Mapping[str, CompletedRun] = field(default_factory=dict)
    #: Keys with a run in flight, in the ops-db or queued/started in Dagster.
    in_flight: frozenset[str] = frozenset()
    #: Failed or cancelled attempts per (key, fingerprint).
    failures: Mapping[tuple[str, str], int] = field(default_factory=dict)
    #: Why ``version`` is None (e.g. "exact policy pins no version").
    version_problem: str | None = None

    @property
    def version_token(self) -> str | None:
        """The version component of the fingerprint a run would have now."""
        return None if self.version is None else version_token(self.version_policy, self.version)


@dataclass(frozen=True)
class PipelineState:
    """A pipeline at one moment: steps in topological order and each grain's package -> key."""

    name: str
    priority: int
    steps: tuple[StepState, ...]
    #: For each grain (``group_by``), the sub-group key of every package of the grouping.
    package_keys: Mapping[tuple[str, ...], Mapping[int, str]]

    def step(self, name: str) -> StepState:
        return self._by_name[name]

    @functools.cached_property
    def _by_name(self) -> dict[str, StepState]:
        return {s.name: s for s in self.steps}


@dataclass(frozen=True)
class Decision:
    """What to do with one (step, sub-group) now, and why."""

    step: str
    key: str
    fire: bool
    reason: Reason
    #: Why there is a gap (one of GAP_REASONS), None when up to date or not yet knowable.
    gap: Reason | None = None
    fingerprint: str | None = None
    #: Failed attempts for this fingerprint so far (0 for a first attempt).
    attempt: int = 0
    #: When the current inputs appeared: older gaps fire first.
    gap_since: dt.datetime | None = None
    #: When a time-based wait (cooldown, schedule) ends; None when time alone changes nothing.
    wake_at: dt.datetime | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


def with_in_flight(state: PipelineState,
                   pairs: Collection[tuple[str, str]]) -> PipelineState:
    """``state`` with more (step, key) pairs in flight, e.g. runs queued in Dagster that have
    not yet written their ExecutedReductionStep."""
    if not pairs:
        return state
    extra: dict[str, set[str]] = {}
    for step, key in pairs:
        extra.setdefault(step, set()).add(key)
    steps = tuple(
        dataclasses.replace(s, in_flight=s.in_flight | extra[s.name]) if s.name in extra else s
        for s in state.steps)
    return dataclasses.replace(state, steps=steps)


#: (step, key, what) -> (the inputs, the result): lets a caller that evaluates the same
#: pipeline again skip re-hashing the pairs whose inputs did not change (their fingerprint,
#: and what changed since their last completed run).
FingerprintMemo = dict[tuple[str, str, str], tuple[tuple[Any, ...], Any]]


def evaluate(state: PipelineState, now: dt.datetime,
             memo: FingerprintMemo | None = None) -> list[Decision]:
    """One decision per (step, sub-group), steps in topological order, keys sorted.

    Upstream runs whose intermediates were freed count as done until a consumer needs them;
    then they are treated as never run, so they are recomputed first and the consumer waits.
    """
    for _ in range(len(state.steps) + 1):
        decisions = _evaluate(state, now, memo)
        needed = _evicted_inputs_of_fired(state, decisions)
        if not needed:
            return decisions
        state = _without_completed(state, needed)
    return decisions


def _evicted_inputs_of_fired(state: PipelineState,
                             decisions: Iterable[Decision]) -> set[tuple[str, str]]:
    needed: set[tuple[str, str]] = set()
    for decision in decisions:
        if not decision.fire:
            continue
        step = state.step(decision.step)
        subgroup = step.subgroups[decision.key]
        for name in step.depends_on:
            upstream = state.step(name)
            for key in upstream_scope(state, step, subgroup, upstream):
                run = upstream.completed.get(key)
                if run is not None and run.evicted:
                    needed.add((name, key))
    return needed


def _without_completed(state: PipelineState,
                       pairs: Collection[tuple[str, str]]) -> PipelineState:
    drop: dict[str, set[str]] = {}
    for step, key in pairs:
        drop.setdefault(step, set()).add(key)
    steps = tuple(
        dataclasses.replace(s, completed={k: v for k, v in s.completed.items()
                                          if k not in drop[s.name]})
        if s.name in drop else s
        for s in state.steps)
    return dataclasses.replace(state, steps=steps)


def _evaluate(state: PipelineState, now: dt.datetime,
              memo: FingerprintMemo | None) -> list[Decision]:
    complete: dict[str, dict[str, bool]] = {}
    decisions: list[Decision] = []
    for step in state.steps:
        done: dict[str, bool] = {}
        for key in sorted(step.subgroups):
            decision = _decide(state, step, step.subgroups[key], complete, now, memo)
            done[key] = decision.reason == Reason.UP_TO_DATE
            decisions.append(decision)
        complete[step.name] = done
    return decisions


def upstream_scope(state: PipelineState, step: StepState, subgroup: SubGroup,
                   upstream: StepState) -> list[str]:
    """The upstream step's keys inside a sub-group: its packages re-grouped at that grain."""
    if upstream.group_by == step.group_by:
        return [subgroup.key]
    keys = state.package_keys[upstream.group_by]
    return sorted({keys[pid] for pid in subgroup.raw_data_package_ids if pid in keys})


def _decide(state: PipelineState, step: StepState, subgroup: SubGroup,
            complete: Mapping[str, Mapping[str, bool]], now: dt.datetime,
            memo: FingerprintMemo | None) -> Decision:
    key = subgroup.key
    last = step.completed.get(key)
    unknown_gap = Reason.NO_COMPLETED_RUN if last is None else None

    waiting: list[str] = []
    products: list[tuple[int, str]] = []
    newest = subgroup.newest_input_at
    for name in step.depends_on:
        upstream = state.step(name)
        for up_key in upstream_scope(state, step, subgroup, upstream):
            run = upstream.completed.get(up_key)
            if not complete[name].get(up_key, False) or run is None:
                waiting.append(f"{name}:{up_key}")
                continue
            products.extend(run.products)
            newest = _later(newest, run.finished_at)
    if waiting:
        return Decision(step.name, key, False, Reason.UPSTREAM_INCOMPLETE, gap=unknown_gap,
                        details={"waiting_on": len(waiting), "examples": waiting[:MAX_EXAMPLES]})
    if step.version_token is None:
        return Decision(step.name, key, False, Reason.NO_VERSION, gap=unknown_gap,
                        details={"problem": step.version_problem or "no software version"})

    fingerprint = _fingerprint(step, subgroup, products, memo)
    base = {"fingerprint": fingerprint, "gap_since": newest}
    in_flight = key in step.in_flight
    changed = _changed(step, last, subgroup, products, fingerprint, memo)
    if last is not None and not changed:
        reason = Reason.IN_FLIGHT if in_flight else Reason.UP_TO_DATE
        return Decision(step.name, key, False, reason, details={"run_id": last.run_id}, **base)

    gap = _gap_reason(last, changed)
    details: dict[str, Any] = {"changed": changed} if changed else {}
    if in_flight:
        return Decision(step.name, key, False, Reason.IN_FLIGHT, gap=gap, details=details, **base)
    if newest is not None and step.cooldown_seconds > 0:
        ready_at = newest + dt.timedelta(seconds=step.cooldown_seconds)
        if now < ready_at:
            left = (ready_at - now).total_seconds()
            return Decision(step.name, key, False, Reason.COOLDOWN, gap=gap, wake_at=ready_at,
                            details={**details, "seconds_left": round(left, 1)}, **base)
    failures = step.failures.get((key, fingerprint), 0)
    if failures > step.max_retries:
        return Decision(step.name, key, False, Reason.RETRIES_EXHAUSTED, gap=gap,
                        attempt=failures,
                        details={**details, "failures": failures,
                                 "max_retries": step.max_retries}, **base)
    if step.schedule:
        reference = (last.finished_at if last is not None else None) or newest
        next_tick = _next_tick(step.schedule, reference)
        if next_tick is not None and next_tick > now:
            return Decision(step.name, key, False, Reason.NOT_SCHEDULED, gap=gap,
                            attempt=failures, wake_at=next_tick,
                            details={**details, "schedule": step.schedule,
                                     "next_tick": next_tick.isoformat()}, **base)
    if failures:
        details["retry"] = f"{failures}/{step.max_retries}"
    return Decision(step.name, key, True, gap, gap=gap, attempt=failures, details=details, **base)


def _memoized(memo: FingerprintMemo | None, slot: tuple[str, str, str],
              inputs: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    """``compute()``, or its result of an earlier evaluation with the same ``inputs``."""
    if memo is not None:
        known = memo.get(slot)
        if known is not None and known[0] == inputs:
            return known[1]
    value = compute()
    if memo is not None:
        memo[slot] = (inputs, value)
    return value


def _fingerprint(step: StepState, subgroup: SubGroup, products: list[tuple[int, str]],
                 memo: FingerprintMemo | None) -> str:
    token = step.version_token
    assert token is not None
    inputs = (subgroup.raw_data_package_ids, subgroup.package_checksums, tuple(products),
              step.config_hash, token)
    return _memoized(memo, (step.name, subgroup.key, "fingerprint"), inputs,
                     lambda: _hash(subgroup, products, step.config_hash, token))


def _hash(subgroup: SubGroup, products: list[tuple[int, str]], config_hash: str,
          token: str) -> str:
    return input_fingerprint(
        packages=zip(subgroup.raw_data_package_ids, subgroup.package_checksums, strict=True),
        upstream_products=products, config_hash=config_hash, version=token)


def _changed(step: StepState, last: CompletedRun | None, subgroup: SubGroup,
             products: list[tuple[int, str]], fingerprint: str,
             memo: FingerprintMemo | None) -> list[str]:
    """The components that changed since ``last``, in GAP_REASONS order; empty when it is
    current (or there is none).

    Equal fingerprints mean nothing changed. Otherwise each component is judged on its own:
    the version by the step's policy now (a switch of policy alone changes no component
    while the version it ran with is still accepted), the inputs by recomputing the stored
    fingerprint from the current inputs with the run's own config and version.
    """
    if last is None or last.fingerprint == fingerprint:
        return []
    inputs = (subgroup.raw_data_package_ids, subgroup.package_checksums, tuple(products),
              step.config_hash, step.version_policy, step.version, last.fingerprint,
              last.config_hash, last.version)
    return list(_memoized(memo, (step.name, subgroup.key, "changed"), inputs,
                          lambda: tuple(_compare(step, last, subgroup, products))))


def _compare(step: StepState, last: CompletedRun, subgroup: SubGroup,
             products: list[tuple[int, str]]) -> list[str]:
    assert step.version is not None
    changed = []
    if last.config_hash != step.config_hash:
        changed.append("config")
    if not accepts(step.version_policy, step.version, last.version):
        changed.append("version")
    if not same_inputs(last.fingerprint, last.version,
                       lambda token: _hash(subgroup, products, last.config_hash, token)):
        changed.append("inputs")
    return changed


def _gap_reason(last: CompletedRun | None, changed: Sequence[str]) -> Reason:
    """The gap a decision names: no run, else the first component that changed."""
    if last is None:
        return Reason.NO_COMPLETED_RUN
    by_component = {"config": Reason.CONFIG_CHANGED, "version": Reason.VERSION_CHANGED,
                    "inputs": Reason.INPUTS_CHANGED}
    return by_component[changed[0]]


def _later(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _next_tick(schedule: str, reference: dt.datetime | None) -> dt.datetime | None:
    """The first tick of ``schedule`` after ``reference``; None (always due) without one."""
    if reference is None:
        return None
    return croniter(schedule, reference).get_next(dt.datetime)


def runs_to_request(decisions: Iterable[Decision], limit: int,
                    step_order: Sequence[str] = ()) -> list[Decision]:
    """The fired decisions a tick launches: oldest gap first, upstream steps before downstream,
    at most ``limit`` (the rest fire on later ticks)."""
    order = {name: i for i, name in enumerate(step_order)}
    never = dt.datetime.min.replace(tzinfo=dt.UTC)
    fired = [d for d in decisions if d.fire]
    fired.sort(key=lambda d: (d.gap_since or never, order.get(d.step, 0), d.step, d.key))
    return fired[:limit]


def next_wake(decisions: Iterable[Decision]) -> dt.datetime | None:
    """The earliest moment a waiting decision may change by time alone."""
    times = [d.wake_at for d in decisions if d.wake_at is not None]
    return min(times) if times else None
