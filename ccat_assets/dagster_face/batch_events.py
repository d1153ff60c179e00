"""What Dagster writes itself for the partitions of an asset run, written by a batch op.

The per-partition "planned" and "failed to materialize" events, and the provenance tags of a
materialization (code version, data version, and the version and event of each input) that
Dagster's staleness resolver reads. A batch op (see :mod:`ccat_assets.dagster_face.batch_job`) must
write them for the partitions it runs, and Dagster 1.13 has no public API for that, so the internal
builders and tag names are used here, in this one module, pinned with the Dagster version.
The partition status and the staleness Dagster derives from them are tested
(``tests/batching/test_batch_dagster.py``), so an upgrade that changes them fails loudly.
"""

from collections.abc import Iterator, Sequence

import dagster as dg
from dagster._core.definitions.data_version import (
    CODE_VERSION_TAG,
    DATA_VERSION_IS_USER_PROVIDED_TAG,
    DATA_VERSION_TAG,
    DEFAULT_DATA_VERSION,
    NULL_EVENT_POINTER,
    extract_data_version_from_entry,
    get_input_data_version_tag,
    get_input_event_pointer_tag,
)
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


def input_provenance(instance: dg.DagsterInstance,
                     parents: Sequence[dg.AssetKey]) -> dict[str, str]:
    """The input tags of a materialization: each parent asset's newest event (its storage id)
    and data version, read when the batch starts, as Dagster reads them when an asset step
    starts. The staleness resolver compares a partitioned parent's partitions against that
    event id, an unpartitioned one (the raw data) against the data version."""
    tags: dict[str, str] = {}
    records = {r.asset_entry.asset_key: r for r in instance.get_asset_records(list(parents))}
    for key in parents:
        entry = records[key].asset_entry if key in records else None
        event = None
        if entry is not None:
            event = entry.last_materialization_record or entry.last_observation_record
        if event is None and not instance.event_log_storage.asset_records_have_last_observation:
            event = next(iter(instance.fetch_observations(key, limit=1).records), None)
        version = (extract_data_version_from_entry(event.event_log_entry) if event else None)
        tags[get_input_data_version_tag(key)] = (version or DEFAULT_DATA_VERSION).value
        tags[get_input_event_pointer_tag(key)] = (
            str(event.storage_id) if event else NULL_EVENT_POINTER)
    return tags


def provenance_tags(*, code_version: str, data_version: str,
                    inputs: dict[str, str]) -> dict[str, str]:
    """The tags of a member's materialization that an asset run's would carry: its code
    version, its data version (given, as ``MaterializeResult(data_version=...)`` gives it)
    and the input tags of :func:`input_provenance`."""
    return {CODE_VERSION_TAG: code_version, DATA_VERSION_TAG: data_version,
            DATA_VERSION_IS_USER_PROVIDED_TAG: "true", **inputs}
