"""Sub-groups become Dagster dynamic partitions as soon as they exist, for every pipeline.

A person materializing or backfilling a partition needs the key to exist in Dagster first
(``dagster asset materialize --partition`` refuses unknown keys), MANUAL pipelines included.
Gap sensors register the keys of CONTINUOUS pipelines when data arrives; the partitions
sensor does the same for every other pipeline (MANUAL, CRON, disabled), and ``ccat-wm
partitions sync`` does it on demand. None of them brings back a key a gap sensor retired
(``sensors/retire.py``): launching it does, or ``ccat-wm partitions sync --key``.

Re-adding keys that exist is not free (a dedupe query: ~0.5-0.8 s for 10k keys on
PostgreSQL), so only missing keys are added, at most 1,000 per statement, and the sensor
works only when packages arrived or the set of pipelines changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ccat_assets.dagster_face.catalog import PipelineDef
from ccat_assets.dagster_face.factory import raw_data_key
from ccat_assets.grouping import resolve_subgroups
from ccat_assets.opsdb import DataGrouping, RawDataPackage
from ccat_assets.opsdb.retired import retired_keys
from ccat_assets.opsdb.session import session_scope
from ccat_assets.settings import get_settings
from sensors.arrivals import Cursor, read_arrivals
from sensors.instance import sensor_instance

ADD_BATCH = 1000
PARTITIONS_SENSOR = "ccat_partitions_sensor"


def add_missing_partitions(instance: dg.DagsterInstance,
                           wanted: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """Add the keys of ``wanted`` (partitions def name -> keys) not yet present, at most
    1,000 per statement; returns the keys added per partitions def.

    The sensors add them themselves rather than return Dagster's
    ``AddDynamicPartitionsRequest``: the daemon applying one asks whether each key exists,
    one query per key (1,000 new scans: about a second before their runs are launched).
    """
    added: dict[str, list[str]] = {}
    for name in sorted(wanted):
        keys = set(wanted[name])
        if not keys:
            continue
        missing = sorted(keys - set(instance.get_dynamic_partitions(name)))
        for i in range(0, len(missing), ADD_BATCH):
            instance.add_dynamic_partitions(name, missing[i:i + ADD_BATCH])
        if missing:
            added[name] = missing
    return added


def partition_count(added: Mapping[str, Sequence[str]]) -> int:
    return sum(len(keys) for keys in added.values())


def subgroup_keys(session: Session, pipelines: Iterable[PipelineDef]) -> dict[str, set[str]]:
    """Partitions def name -> the current sub-group keys of its grain, for ``pipelines``."""
    wanted: dict[str, set[str]] = {}
    for pipeline in pipelines:
        grouping = session.scalar(sa.select(DataGrouping).filter_by(name=pipeline.grouping))
        if grouping is None:
            continue
        for step in pipeline.steps:
            if not step.partitioned or step.partitions_name in wanted:
                continue
            wanted[step.partitions_name] = {sg.key for sg in resolve_subgroups(
                session, filter_rules=grouping.filter_rules, group_by=list(step.group_by),
                instrument_module_id=grouping.instrument_module_id)}
    return wanted


def active_subgroup_keys(session: Session,
                         pipelines: Iterable[PipelineDef]) -> dict[str, set[str]]:
    """:func:`subgroup_keys` without the retired ones (``docs/scale.md``): what the
    partition sets should hold."""
    wanted = subgroup_keys(session, pipelines)
    retired = retired_keys(session, sorted(wanted))
    return {name: keys - retired[name] for name, keys in wanted.items()}


def sync_partitions(instance: dg.DagsterInstance, session: Session,
                    pipelines: Iterable[PipelineDef]) -> dict[str, int]:
    """Add every missing sub-group key of ``pipelines`` that is not retired; returns keys
    added per partitions def (0 for those complete already)."""
    wanted = active_subgroup_keys(session, pipelines)
    added = add_missing_partitions(instance, wanted)
    return {name: len(added.get(name, [])) for name in wanted}


def grouping_observation(session: Session, grouping: str) -> dg.AssetObservation | None:
    """How much raw data feeds the grouping's pipelines now, on its external asset: packages,
    bytes and the newest arrival, so the catalog and the lineage view show it."""
    row = session.scalar(sa.select(DataGrouping).filter_by(name=grouping))
    if row is None:
        return None
    found = resolve_subgroups(session, filter_rules=row.filter_rules, group_by=[],
                              instrument_module_id=row.instrument_module_id)
    ids = found[0].raw_data_package_ids if found else []
    count, size, newest = 0, 0, None
    for start in range(0, len(ids), ADD_BATCH):
        n, b, t = session.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(RawDataPackage.size_bytes), 0),
                      sa.func.max(RawDataPackage.updated_at))
            .where(RawDataPackage.id.in_(ids[start:start + ADD_BATCH]))).one()
        count, size = count + n, size + int(b)
        newest = t if newest is None or (t is not None and t > newest) else newest
    return dg.AssetObservation(asset_key=raw_data_key(grouping), metadata={
        "packages": dg.MetadataValue.int(count),
        "total_bytes": dg.MetadataValue.int(size),
        "newest_arrival": dg.MetadataValue.timestamp(newest) if newest else "none",
    })


def catalog_token(pipelines: Sequence[PipelineDef]) -> str:
    """Changes when a pipeline or one of its grains is added, removed or changed."""
    shape = sorted((p.name, p.grouping, sorted(s.partitions_name for s in p.steps if s.partitioned))
                   for p in pipelines)
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:16]


def build_partitions_sensor(pipelines: Sequence[PipelineDef],
                            interval_seconds: int) -> dg.SensorDefinition:
    """Registers the sub-groups of ``pipelines`` (those no gap sensor follows)."""
    token = catalog_token(pipelines)
    names = ", ".join(p.name for p in pipelines) or "none"

    @dg.sensor(
        name=PARTITIONS_SENSOR,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=("Registers the sub-groups of the pipelines without a running gap sensor "
                     f"as Dagster partitions when raw data arrives ({names}), so they can be "
                     "materialized and backfilled at once, and observes their groupings' raw "
                     "data (packages, bytes, newest arrival)."),
        tags={"ccat/kind": "partitions"},
    )
    def _partitions(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        cursor = Cursor.parse(context.cursor)
        with session_scope(get_settings().database_url) as session:
            arrivals = read_arrivals(session, cursor)
            if not arrivals.package_ids and cursor.pools == token:
                return dg.SensorResult(skip_reason="no new raw data, no new pipeline")
            wanted = active_subgroup_keys(session, pipelines)
            observations = [o for g in sorted({p.grouping for p in pipelines})
                            if (o := grouping_observation(session, g)) is not None]
        added = add_missing_partitions(sensor_instance(context), wanted)
        if added:
            context.log.info(f"registered {partition_count(added)} new sub-group(s) as "
                             "partitions")
        # the cursor's ``pools`` field holds this sensor's catalog token
        return dg.SensorResult(
            asset_events=observations, cursor=replace(arrivals.cursor, pools=token).dump(),
            skip_reason=(f"registered {partition_count(added)} new sub-group(s) as partitions"
                         if added else f"all sub-groups of {len(wanted)} grain(s) are "
                                       "partitions"))

    return _partitions
