"""The per-partition "planned" and "failed to materialize" events of a batch run.

Dagster writes these itself for asset runs; a batch op (see :mod:`ccat_assets.batch_job`)
must write them for the partitions it runs, and Dagster 1.13 has no public API for that, so
the internal event builders are used here, in this one module, pinned with the Dagster
version. The partition status Dagster derives from them is tested
(``tests/batching/test_batch_dagster.py``), so an upgrade that changes them fails loudly.
"""

from collections.abc import Iterator

import dagster as dg
from dagster._core.definitions.events import (
    AssetMaterializationFailure,
    AssetMaterializationFailureReason,
    AssetMaterializationFailureType,
)
from dagster._core.events import AssetMaterializationPlannedData, DagsterEvent


def _step_key(context: dg.OpExecutionContext) -> str:
    return context.get_step_execution_context().step.key


def planned_events(context: dg.OpExecutionContext, asset_key: dg.AssetKey,
                   partitions: list[str]) -> Iterator[DagsterEvent]:
    for partition in partitions:
        yield DagsterEvent.build_asset_materialization_planned_event(
            context.run.job_name, _step_key(context),
            AssetMaterializationPlannedData(asset_key, partition=partition))


def failed_event(context: dg.OpExecutionContext, asset_key: dg.AssetKey, partition: str,
                 reason: str) -> DagsterEvent:
    return DagsterEvent.build_asset_failed_to_materialize_event(
        context.run.job_name, _step_key(context),
        AssetMaterializationFailure(
            asset_key=asset_key, partition=partition, description=reason[:2000],
            failure_type=AssetMaterializationFailureType.FAILED,
            reason=AssetMaterializationFailureReason.FAILED_TO_MATERIALIZE))
