"""The last evaluated state of each pipeline, kept between sensor ticks.

A sensor runs in a long-lived code server, so keeping the state in memory turns a steady-state
tick into a watermark read. When the watermark moved, only the parts it points at are read
again: new or changed packages re-resolve the grains, new or finished runs re-read the run
tables, a changed spec (or the periodic full reload) reloads everything. Decisions are
recomputed only when the state, the runs queued in Dagster, or the clock (a cooldown or a
schedule ending) can have changed them, and unchanged pairs reuse their fingerprints.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from ccat_assets.automation.gaps import (
    Decision,
    FingerprintMemo,
    PipelineState,
    evaluate,
    next_wake,
    with_in_flight,
)
from ccat_assets.automation.gapstate.load import (
    Grains,
    PipelineDefinition,
    assemble,
    load_definition,
    load_step_runs,
    resolve_grains,
)
from ccat_assets.automation.gapstate.runs import RunTables
from ccat_assets.automation.gapstate.watermark import Watermark

ALL_PARTS = frozenset({"definition", "grains", "runs"})


@dataclass
class _Entry:
    mark: Watermark
    loaded_at: dt.datetime
    definition: PipelineDefinition
    grains: Grains
    runs: RunTables
    state: PipelineState
    memo: FingerprintMemo = field(default_factory=dict)
    queued: frozenset[tuple[str, str]] | None = None
    decisions: list[Decision] | None = None
    fired: list[Decision] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    wake_at: dt.datetime | None = None

    def assemble(self) -> None:
        self.state = assemble(self.definition, self.grains, self.runs)
        self.decisions = None


@dataclass(frozen=True)
class Evaluation:
    decisions: list[Decision]
    #: The decisions that fire and a count of every reason, kept so that a tick in which
    #: nothing changed does no work per sub-group.
    fired: list[Decision]
    reasons: Counter[str]
    state: PipelineState
    #: The parts read from the ops-db for this evaluation (empty: all from memory).
    reloaded: frozenset[str]
    reevaluated: bool


class StateCache:
    """Pipeline states by (database, pipeline), refreshed part by part when stale."""

    def __init__(self, full_reload_seconds: float):
        self.full_reload = dt.timedelta(seconds=full_reload_seconds)
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()

    def evaluate(self, key: tuple[str, str], *, session: Session, name: str, mark: Watermark,
                 now: dt.datetime, queued: Collection[tuple[str, str]] = ()) -> Evaluation:
        """Decisions for pipeline ``name`` now, reading from ``session`` only what is stale."""
        with self._lock:
            entry = self._entries.get(key)
        entry, reloaded = self._refresh(entry, session, name, mark, now)
        queued = frozenset(queued)
        stale = (entry.decisions is None or entry.queued != queued
                 or (entry.wake_at is not None and now >= entry.wake_at))
        if stale:
            entry.decisions = evaluate(with_in_flight(entry.state, queued), now, entry.memo)
            entry.fired = [d for d in entry.decisions if d.fire]
            entry.reasons = Counter(d.reason.value for d in entry.decisions)
            entry.queued = queued
            entry.wake_at = next_wake(entry.decisions)
        with self._lock:
            self._entries[key] = entry
        assert entry.decisions is not None
        return Evaluation(entry.decisions, entry.fired, entry.reasons, entry.state, reloaded,
                          stale)

    def _refresh(self, entry: _Entry | None, session: Session, name: str, mark: Watermark,
                 now: dt.datetime) -> tuple[_Entry, frozenset[str]]:
        if (entry is None or mark.definitions != entry.mark.definitions
                or not entry.loaded_at <= now < entry.loaded_at + self.full_reload):
            definition = load_definition(session, name)
            grains = resolve_grains(session, definition)
            runs = load_step_runs(session, definition)
            memo = entry.memo if entry is not None else {}
            fresh = _Entry(mark=mark, loaded_at=now, definition=definition, grains=grains,
                           runs=runs, state=assemble(definition, grains, runs), memo=memo)
            return fresh, ALL_PARTS
        parts = set()
        if mark.packages != entry.mark.packages:
            entry.grains = resolve_grains(session, entry.definition)
            parts.add("grains")
        if mark.runs != entry.mark.runs:
            entry.runs = load_step_runs(session, entry.definition)
            parts.add("runs")
        if parts:
            entry.mark = mark
            entry.assemble()
        return entry, frozenset(parts)

    def forget(self, key: tuple[str, str] | None = None) -> None:
        with self._lock:
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)
