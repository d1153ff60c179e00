"""The pooled event-log storage serializes an event once for every row that stores it and
sends no ``NOTIFY`` (``ccat_assets/dagster_face/event_text.py``, ``pooled_storage.py``),
and the rows hold exactly the text Dagster's own storage writes.

Integration: the same events stored through the pooled storage and through Dagster's plain
``storage: postgres`` (the ``instance`` fixture of the check-rows tests), each on a scratch
PostgreSQL database; every stored text is compared with ``serialize_value`` of what was
stored, and the materialization is read back through Dagster's API.
"""

from __future__ import annotations

import logging
import time

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.event_api import EventLogRecord
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.events.log import EventLogEntry
from dagster._serdes import serialize_value

from ccat_assets.dagster_face.event_text import _STORAGE_ID_MARK, EventText
from tests.execution.test_exec_check_execution_rows import (  # noqa: F401 - fixture
    ASSET,
    evaluation_entry,
    instance,
)


def materialization_entry(run_id: str, partition: str, note: str) -> EventLogEntry:
    """A member's materialization as a batch op reports it, with metadata."""
    materialization = dg.AssetMaterialization(
        asset_key=ASSET, partition=partition,
        metadata={"note": note, "products": 2, "size_bytes": dg.MetadataValue.int(1234)})
    event = DagsterEvent(event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                         job_name="batch", step_key="members",
                         event_specific_data=StepMaterializationData(materialization))
    return EventLogEntry(error_info=None, level=logging.INFO, user_message="", run_id=run_id,
                         timestamp=time.time(), step_key="members", dagster_event=event)


def message_entry(run_id: str) -> EventLogEntry:
    return EventLogEntry(error_info=None, level=logging.INFO, user_message="claimed 50",
                         run_id=run_id, timestamp=time.time())


@pytest.mark.parametrize("note", ["plain", f"holds the mark {_STORAGE_ID_MARK}"])
def test_a_records_text_is_dagsters_own(note: str) -> None:
    text = EventText()
    entry = materialization_entry("run-a", "scan-1", note)
    for storage_id in (1, 42, 10**12):
        assert text.of_record(entry, storage_id) == serialize_value(
            EventLogRecord(storage_id=storage_id, event_log_entry=entry))
    assert text.of(entry) == serialize_value(entry)


def test_a_remembered_text_serves_only_its_own_event() -> None:
    text = EventText()
    first, second = message_entry("run-a"), message_entry("run-b")
    text.remember(first, "the first's text")
    assert text.of(first) == "the first's text"
    assert text.of(second) == serialize_value(second)


def test_stored_rows_hold_dagsters_text_and_no_notify_is_sent(
        instance: dg.DagsterInstance) -> None:  # noqa: F811 - fixture
    storage = instance.event_log_storage
    pooled = type(storage).__name__.startswith("Pooled")
    statements: list[str] = []
    sa.event.listen(storage._engine, "before_cursor_execute",  # noqa: SLF001
                    lambda *args: statements.append(args[2]))
    entries = [message_entry("run-a"), materialization_entry("run-a", "scan-1", "first"),
               evaluation_entry("run-a", "files", "scan-1", passed=True),
               materialization_entry("run-a", "scan-2", "second")]
    for entry in entries:
        storage.store_event(entry)

    with storage._engine.connect() as conn:  # noqa: SLF001
        stored = [tuple(r) for r in conn.execute(sa.text(
            "SELECT id, event FROM event_logs WHERE run_id = 'run-a' ORDER BY id"))]
        last_materialization = conn.scalar(sa.text(
            "SELECT last_materialization FROM asset_keys WHERE asset_key = :key"),
            {"key": ASSET.to_string()})
        evaluation = conn.scalar(sa.text(
            "SELECT evaluation_event FROM asset_check_executions WHERE check_name = 'files'"))
    assert [text for _, text in stored] == [serialize_value(e) for e in entries]
    newest_id = stored[-1][0]
    assert last_materialization == serialize_value(
        EventLogRecord(storage_id=newest_id, event_log_entry=entries[-1]))
    assert evaluation == serialize_value(entries[2])
    latest = instance.get_latest_materialization_event(ASSET)
    assert latest is not None and latest.asset_materialization.partition == "scan-2"

    notifies = [s for s in statements if s.lstrip().upper().startswith("NOTIFY")]
    assert len(notifies) == (0 if pooled else len(entries)), notifies
