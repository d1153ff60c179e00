"""A check evaluation's execution row, written as Dagster writes it, in one statement.

Why: Dagster 1.13 (``SqlEventLogStorage._update_asset_check_evaluation``) updates the row
that the check's planned event made and, finding none, inserts one: two statements, each
serializing the whole event again, after the event itself was stored. A batch run plans no
check (its op reports each member's evaluations itself), so every evaluation took the
update that finds nothing and the insert: half of what storing a check evaluation cost, and
check evaluations were the largest share of a batch member's Dagster events (py-spy over
``bench/overhead.py``, docs/batching.md). Here the update-else-insert is one statement with
the event serialized once; a single run's evaluation still updates its planned row.

The statement names Dagster's ``asset_check_executions`` columns: pinned with the Dagster
version, and ``tests/execution/test_exec_check_execution_rows.py`` reads the rows back
through Dagster's own API, so an upgrade that changes them fails loudly.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, cast

import sqlalchemy as sa
from dagster._core.errors import DagsterInvariantViolationError
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._serdes import serialize_value

if TYPE_CHECKING:
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluation,
    )

#: Dagster's update of the row a check's planned event made, else the insert of one (as
#: ``SqlEventLogStorage._update_asset_check_evaluation``), as one statement; it returns how
#: many rows it updated. The casts keep the parameters' types whatever the driver.
RECORD_CHECK_EXECUTION = sa.text("""
WITH updated AS (
    UPDATE asset_check_executions
    SET execution_status = :status, evaluation_event = :event,
        evaluation_event_timestamp = CAST(:timestamp AS TIMESTAMP),
        evaluation_event_storage_id = CAST(:event_id AS BIGINT),
        materialization_event_storage_id = CAST(:materialization_id AS BIGINT),
        partition = CAST(:partition AS TEXT)
    WHERE asset_key = :asset_key AND check_name = :check_name AND run_id = :run_id
      AND partition IS NOT DISTINCT FROM CAST(:partition AS TEXT)
    RETURNING 1
), inserted AS (
    INSERT INTO asset_check_executions (
        asset_key, check_name, run_id, execution_status, evaluation_event,
        evaluation_event_timestamp, evaluation_event_storage_id,
        materialization_event_storage_id, partition)
    SELECT :asset_key, :check_name, :run_id, :status, :event, CAST(:timestamp AS TIMESTAMP),
           CAST(:event_id AS BIGINT), CAST(:materialization_id AS BIGINT),
           CAST(:partition AS TEXT)
    WHERE NOT EXISTS (SELECT 1 FROM updated)
)
SELECT count(*) FROM updated
""")


def record_check_execution(conn: sa.Connection, event: EventLogEntry, event_id: int | None,
                           timestamp: dt.datetime, *, event_text: str | None = None) -> None:
    """Update the run's planned row of the evaluated check (and partition), else insert it;
    ``event_id``: the evaluation event's storage id, ``timestamp``: its insert timestamp,
    ``event_text``: ``serialize_value(event)`` if already made."""
    evaluation = cast("AssetCheckEvaluation", event.get_dagster_event().event_specific_data)
    target = evaluation.target_materialization_data
    status = (AssetCheckExecutionRecordStatus.SUCCEEDED if evaluation.passed
              else AssetCheckExecutionRecordStatus.FAILED)
    updated = conn.execute(RECORD_CHECK_EXECUTION, {
        "asset_key": evaluation.asset_key.to_string(), "check_name": evaluation.check_name,
        "run_id": event.run_id, "partition": evaluation.partition, "status": status.value,
        "event": event_text or serialize_value(event), "timestamp": timestamp, "event_id": event_id,
        "materialization_id": target.storage_id if target else None,
    }).scalar_one()
    if updated > 1:  # as Dagster's own
        raise DagsterInvariantViolationError(
            f"Updated {updated} rows for asset check evaluation {evaluation.asset_check_key} "
            "as a result of duplicate AssetCheckPlanned events.")
