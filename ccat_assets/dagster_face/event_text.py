"""An event's serialized text, made once for every row that stores it.

Why: Dagster 1.13 serializes a stored event in full for its event-log row, again (wrapped
in an ``EventLogRecord`` with its storage id) for the asset's ``last_materialization``
column, and again for a check evaluation's execution row. Serialization is Dagster's pure
Python walk of the event (``serdes``), and a batch member stores a materialization and three
check evaluations: the repeats were about a fifth of storing them (py-spy over
``bench/overhead.py``, docs/batching.md). The text is the same each time, so it is made
once per event and spliced into the record.

The splice relies on JSON nesting only: an ``EventLogRecord``'s text is its fields' texts
between its own, whatever Dagster's field order. The head and tail around the event are
taken from Dagster's own serialization of a record once per process, and
``tests/execution/test_exec_event_text.py`` compares every text with Dagster's.
"""

from __future__ import annotations

import logging
import threading

from dagster._core.event_api import EventLogRecord
from dagster._core.events.log import EventLogEntry
from dagster._serdes import serialize_value

#: A storage id no real event has: where the record's own text holds the id.
_STORAGE_ID_MARK = 987654321987654321


class EventText:
    """The serialized text of the event being stored (the last one asked for, per thread)
    and of its ``EventLogRecord``."""

    def __init__(self) -> None:
        self._last = threading.local()
        self._record_around: tuple[str, str] | None = None

    def remember(self, event: EventLogEntry, text: str) -> None:
        """``text`` is ``serialize_value(event)``, made by Dagster for the event's row."""
        self._last.pair = (event, text)

    def of(self, event: EventLogEntry) -> str:
        """``serialize_value(event)``, made once while the same event is being stored."""
        last = getattr(self._last, "pair", None)
        if last is not None and last[0] is event:
            return last[1]
        text = serialize_value(event)
        self.remember(event, text)
        return text

    def of_record(self, event: EventLogEntry, storage_id: int) -> str:
        """``serialize_value(EventLogRecord(storage_id=..., event_log_entry=event))``."""
        head, tail = self._around()
        mark, storage = str(_STORAGE_ID_MARK), str(storage_id)
        return head.replace(mark, storage) + self.of(event) + tail.replace(mark, storage)

    def _around(self) -> tuple[str, str]:
        """The record's text before and after its event, from Dagster's serialization of a
        record holding a small event."""
        if self._record_around is None:
            probe = EventLogEntry(error_info=None, level=logging.INFO, user_message="probe",
                                  run_id="probe", timestamp=0.0)
            inner = serialize_value(probe)
            whole = serialize_value(EventLogRecord(storage_id=_STORAGE_ID_MARK,
                                                   event_log_entry=probe))
            head, found, tail = whole.partition(inner)
            if not found or inner in tail:
                raise RuntimeError("an EventLogRecord's text does not hold its event's text "
                                   "once: Dagster's serialization changed")
            self._record_around = (head, tail)
        return self._record_around
