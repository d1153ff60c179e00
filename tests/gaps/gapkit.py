"""Helpers of the gap tests: a CONTINUOUS test pipeline, sensor ticks as the daemon runs them,
runs queued as the daemon queues them, and real materializations."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa
from click.testing import CliRunner
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import (
    CachingStaleStatusResolver,
    StaleCauseCategory,
    StaleStatus,
)
from dagster._time import get_current_datetime

from ccat_assets.cli import cli
from ccat_assets.grouping import subgroup_key
from ccat_assets.opsdb import ExecutedReductionStep, Pipeline, ReductionStep
from ccat_assets.opsdb.session import session_scope
from tests.factories import pipeline_spec, write_observations, write_spec

PIPELINE = "chai_test"
SCANS = [("scan-001", "NGC253", "CO43"), ("scan-002", "NGC253", "CO43"),
         ("scan-003", "ORION", "CII")]
SENSOR = f"{PIPELINE}__gap_sensor"


def scan_key(scan: str) -> str:
    return subgroup_key(["executed_obs_unit"], [scan])


def map_key(source: str, line: str) -> str:
    return subgroup_key(["source", "line"], [source, line])


def ccat(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
    return result.output


def apply_pipeline(tmp_path: Path, *, trigger: dict[str, Any] | None = None,
                   **step_changes: Any) -> None:
    """The two-step test pipeline (calibrate per scan -> grid per source+line)."""
    spec = pipeline_spec(tmp_path / "processing")
    pipeline = spec["pipelines"][0]
    pipeline["trigger"] = trigger or {"type": "CONTINUOUS"}
    for name, changes in step_changes.items():
        next(s for s in pipeline["steps"] if s["name"] == name).update(changes)
    ccat("apply", "--no-reload", str(write_spec(tmp_path / "pipeline.yaml", spec)))


def apply_versions(tmp_path: Path, versions: Sequence[str], *,
                   trigger: dict[str, Any] | None = None, **calibrate: Any) -> None:
    """The test pipeline with ``versions`` of the calibration software (the highest is the
    latest) and ``calibrate`` changed by ``calibrate`` (a version policy, a pin, a config)."""
    spec = pipeline_spec(tmp_path / "processing")
    spec["pipelines"][0]["trigger"] = trigger or {"type": "CONTINUOUS"}
    spec["software"][0]["versions"] = [
        {"version": v, "image": f"ghcr.io/ccatobs/test-calibration:{v}"} for v in versions]
    spec["pipelines"][0]["steps"][0].update(calibrate)
    ccat("apply", "--no-reload", str(write_spec(tmp_path / "pipeline.yaml", spec)))


def ingest(tmp_path: Path, scans: Sequence[tuple[str, str, str]],
           night: str = "2026-11-01") -> None:
    ccat("ingest", str(write_observations(tmp_path / "archive", list(scans), night=night)))


def tick(defs: dg.Definitions, instance: dg.DagsterInstance,
         cursor: str | None = None) -> dg.SensorResult:
    """One evaluation of the gap sensor (which adds the partitions its runs need itself)."""
    context = dg.build_sensor_context(instance=instance, instance_ref=instance.get_ref(),
                                      cursor=cursor, definitions=defs)
    result = defs.get_sensor_def(SENSOR)(context)
    assert isinstance(result, dg.SensorResult)
    assert not result.dynamic_partitions_requests  # nothing left for the daemon to add
    return result


def fired(result: dg.SensorResult) -> list[tuple[str, str]]:
    return [(r.tags["ccat/step"], r.tags["ccat/sub_group"]) for r in result.run_requests or []]


def queue(defs: dg.Definitions, instance: dg.DagsterInstance,
          requests: Sequence[dg.RunRequest]) -> list[str]:
    """Create the runs of ``requests`` not yet started, as the daemon does before a worker runs
    them (QUEUED would need a code location origin)."""
    job = defs.resolve_implicit_global_asset_job_def()
    ids = []
    for request in requests:
        tags = dict(request.tags)
        if request.partition_key:
            tags["dagster/partition"] = request.partition_key
        run = instance.create_run_for_job(
            job_def=job, tags=tags, status=dg.DagsterRunStatus.NOT_STARTED,
            asset_selection=frozenset(request.asset_selection or ()))
        ids.append(run.run_id)
    return ids


def materialize(defs: dg.Definitions, instance: dg.DagsterInstance, step: str,
                key: str | None, tags: dict[str, str] | None = None,
                raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    """Run one (step, sub-group) in process, registering its partition first if needed."""
    asset = dg.AssetKey(["ccat", PIPELINE, step])
    partitions = defs.resolve_assets_def(asset).partitions_def
    if key is not None and isinstance(partitions, dg.DynamicPartitionsDefinition):
        instance.add_dynamic_partitions(partitions.name, [key])
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        partition_key=key, instance=instance, tags=tags, raise_on_error=raise_on_error,
        asset_selection=[asset])


def run_requests(defs: dg.Definitions, instance: dg.DagsterInstance,
                 result: dg.SensorResult) -> None:
    """Execute the requested runs for real, one by one, with the request's tags."""
    for request in result.run_requests or []:
        outcome = materialize(defs, instance, request.tags["ccat/step"], request.partition_key,
                              tags={k: v for k, v in request.tags.items()
                                    if k.startswith("ccat/")})
        assert outcome.success


def add_run(step: str, key: str, status: Any, **fields: Any) -> int:
    """An ExecutedReductionStep of ``step`` written directly (config and version of the step)."""
    with session_scope() as session:
        row = session.scalar(sa.select(ReductionStep).join(Pipeline).where(
            Pipeline.name == PIPELINE, ReductionStep.name == step))
        version = row.pinned_version_id or next(
            v.id for v in row.software.versions if v.is_latest)
        run = ExecutedReductionStep(
            reduction_step_id=row.id, reduction_software_version_id=version,
            reduction_step_config_id=row.reduction_step_config_id, sub_group_key=key,
            input_fingerprint=fields.pop("input_fingerprint", "sha256:test"), status=status,
            **fields)
        session.add(run)
        session.flush()
        return run.id


#: A stale cause as (category, reason, the upstream partition it names).
Cause = tuple[StaleCauseCategory, str, str | None]
CODE_CAUSE: Cause = (StaleCauseCategory.CODE, "has a new code version", None)


def staleness(defs: dg.Definitions, instance: dg.DagsterInstance,
              partitions: Sequence[tuple[dg.AssetKey, str]],
              ) -> dict[tuple[dg.AssetKey, str], tuple[StaleStatus, set[Cause]]]:
    """Each partition's stale status and causes, as the UI computes them for ``defs``
    (Dagster's own resolver; its public face is the asset page's "unsynced")."""
    graph = defs.resolve_asset_graph()
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance, asset_graph=graph)
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=graph,
                                          loading_context=view)
    return {(asset, key): (resolver.get_status(asset, key),
                           {(c.category, c.reason, c.dependency_partition_key)
                            for c in resolver.get_stale_causes(asset, key)})
            for asset, key in partitions}
