"""The gap sensor's retirement pass: fully reduced sub-groups leave the partition sets.

Dagster's pages slow down with the number of dynamic partitions (``docs/scale.md``), so a
gap sensor removes the keys that :func:`ccat_assets.automation.retirement.retirable_keys`
calls reduced for good, at most ``RETIRE_MAX_PER_TICK`` a tick: it records each in the
ops-db (``retired_partition``), then deletes them from Dagster. The pass runs on every tick
while it still finds work, then once every ``CHECK_SECONDS`` (the grace period is days, so a
few minutes of delay do not matter and a steady tick stays cheap). It lists the grain's
current partitions only then.
"""

from __future__ import annotations

import datetime as dt
import threading

import dagster as dg
from dagster._core.storage.event_log.schema import DynamicPartitionsTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from sqlalchemy.orm import Session

from ccat_assets.automation.gapstate.cache import Evaluation
from ccat_assets.automation.retirement import retirable_keys
from ccat_assets.dagster_face.catalog import PipelineDef
from ccat_assets.opsdb.retired import mark_retired
from ccat_assets.settings import Settings

#: Seconds between passes once a pass found less than a tick's worth to retire.
CHECK_SECONDS = 300
#: Keys per DELETE statement.
DELETE_CHUNK = 1000

_next_pass: dict[tuple[str, str], dt.datetime] = {}
_lock = threading.Lock()


def partitions_by_grain(pipeline: PipelineDef) -> dict[tuple[str, ...], str]:
    """Grain (``group_by``) -> its partitions def name, for the partitioned grains."""
    return {tuple(s.group_by): s.partitions_name for s in pipeline.steps if s.partitioned}


def forget_passes() -> None:
    """Run the next pass of every pipeline at its next tick (tests)."""
    with _lock:
        _next_pass.clear()


def retire_reduced(instance: dg.DagsterInstance, session: Session, pipeline: PipelineDef,
                   evaluation: Evaluation, *, now: dt.datetime,
                   settings: Settings) -> dict[str, list[str]]:
    """Record the keys this tick retires in ``session`` and return them (partitions def
    name -> keys) for :func:`delete_partitions` once that is committed; empty when
    retirement is off or not due."""
    if settings.retire_after_days <= 0:
        return {}
    due_key = (settings.database_url, pipeline.name)
    with _lock:
        due = _next_pass.get(due_key)
        if due is not None and now < due:
            return {}
    retirable = retirable_keys(evaluation.state, evaluation.decisions, now=now,
                               grace=dt.timedelta(days=settings.retire_after_days))
    budget = settings.retire_max_per_tick
    chosen: dict[str, list[str]] = {}
    for grain, name in sorted(partitions_by_grain(pipeline).items(), key=lambda item: item[1]):
        keys = retirable.get(grain, set())
        if not keys or budget <= 0:
            continue
        present = sorted(keys.intersection(instance.get_dynamic_partitions(name)))
        if present[:budget]:
            chosen[name] = present[:budget]
            budget -= len(chosen[name])
    mark_retired(session, chosen, at=now)
    with _lock:
        # a full pass may have left more behind: look again at the next tick
        _next_pass[due_key] = now if budget <= 0 else now + dt.timedelta(seconds=CHECK_SECONDS)
    return chosen


def delete_partitions(instance: dg.DagsterInstance, keys: dict[str, list[str]]) -> None:
    """Delete ``keys`` (partitions def name -> keys) from Dagster's dynamic partitions.

    Not through the sensor's ``DeleteDynamicPartitionsRequest``: the daemon applies that
    with one statement and one storage connection per key (about 20 ms a key on PostgreSQL
    here, 20 s for a tick's budget; ``bench/retirement.py``). On an SQL event log storage
    (SQLite, PostgreSQL, MySQL) this is one DELETE per 1,000 keys on the table Dagster's own
    ``delete_dynamic_partition`` writes; on any other storage it falls back to that call.
    Called after the ops-db recorded the retirement: a tick that dies in between leaves
    keys recorded but present, and the next pass deletes them."""
    storage = instance.event_log_storage
    for name, chosen in sorted(keys.items()):
        if not isinstance(storage, SqlEventLogStorage):
            for key in chosen:
                instance.delete_dynamic_partition(name, key)
            continue
        table = DynamicPartitionsTable
        for start in range(0, len(chosen), DELETE_CHUNK):
            with storage.index_connection() as connection:
                connection.execute(table.delete().where(
                    table.c.partitions_def_name == name,
                    table.c.partition.in_(chosen[start:start + DELETE_CHUNK])))
