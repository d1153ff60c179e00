"""Helpers of the results tests: the test pipeline applied, runs made by hand (fast) or by
materializing partitions (real), and files written where a program would write them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa
from click.testing import CliRunner, Result
from sqlalchemy.orm import Session

from ccat_assets.cli import cli
from ccat_assets.grouping import subgroup_key
from ccat_assets.opsdb import (
    ExecutedReductionStep,
    Pipeline,
    RawDataPackage,
    ReductionStep,
    RunStatus,
    run_input_data_product,
    run_input_raw_data_package,
)
from ccat_assets.opsdb.types import utcnow
from ccat_assets.results.contract import RunLayout
from tests.factories import pipeline_spec, write_observations, write_spec

PIPELINE = "chai_test"
SCANS = [("scan-001", "NGC253", "CO43"), ("scan-002", "NGC253", "CO43"),
         ("scan-003", "ORION", "CII")]


def ccat(*args: str, ok: bool = True) -> Result:
    result = CliRunner().invoke(cli, list(args))
    if ok:
        assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
    return result


def ccat_json(*args: str) -> Any:
    return json.loads(ccat(*args, "--json").output)


def scan_key(scan: str) -> str:
    return subgroup_key(["executed_obs_unit"], [scan])


def map_key(source: str, line: str) -> str:
    return subgroup_key(["source", "line"], [source, line])


def apply_and_ingest(tmp_path: Path, *, thresholds: dict[str, Any] | None = None,
                     scans: Sequence[tuple[str, str, str]] = SCANS,
                     calibrate_params: dict[str, Any] | None = None) -> None:
    """The two-step test pipeline (calibrate per scan -> grid per source+line), data in;
    ``calibrate_params`` are added to the calibrate step's parameters."""
    spec = pipeline_spec(tmp_path / "processing", extra_step_params=calibrate_params)
    if thresholds:
        grid = spec["pipelines"][0]["steps"][1]
        grid["config"]["quality_thresholds"] = thresholds
    ccat("apply", "--no-reload", str(write_spec(tmp_path / "pipeline.yaml", spec)))
    ccat("ingest", str(write_observations(tmp_path / "archive", list(scans))))


def step(session: Session, name: str) -> ReductionStep:
    return session.scalar(sa.select(ReductionStep).join(Pipeline)
                          .where(Pipeline.name == PIPELINE, ReductionStep.name == name))


def package_ids(session: Session, *scans: str) -> list[int]:
    names = [f"{s}-chai" for s in scans]
    return list(session.scalars(sa.select(RawDataPackage.id)
                                .where(RawDataPackage.name.in_(names))
                                .order_by(RawDataPackage.id)))


def make_run(session: Session, step_name: str, key: str, base: Path, *,
             raw_ids: Iterable[int] = (), product_ids: Iterable[int] = (),
             status: RunStatus = RunStatus.COLLECTING_RESULTS) -> tuple[ExecutedReductionStep,
                                                                       RunLayout]:
    """A run row as the executor leaves it before collection, and its (created) layout."""
    reduction_step = step(session, step_name)
    run = ExecutedReductionStep(
        reduction_step_id=reduction_step.id,
        reduction_software_version_id=reduction_step.software.versions[-1].id,
        reduction_step_config_id=reduction_step.reduction_step_config_id,
        sub_group_key=key, input_fingerprint=f"sha256:{key}", status=status,
        execution_command=["prog", "--flag"], started_at=utcnow(), finished_at=utcnow(),
    )
    session.add(run)
    session.flush()
    layout = RunLayout.for_run(base, PIPELINE, key, step_name, run.id)
    layout.create()
    run.run_dir = str(layout.root)
    raw_ids, product_ids = list(raw_ids), list(product_ids)
    if raw_ids:
        session.execute(sa.insert(run_input_raw_data_package), [
            {"executed_reduction_step_id": run.id, "raw_data_package_id": r} for r in raw_ids])
    if product_ids:
        session.execute(sa.insert(run_input_data_product), [
            {"executed_reduction_step_id": run.id, "data_product_id": p} for p in product_ids])
    return run, layout


def write(path: Path, data: bytes | str, sidecar: dict[str, Any] | str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if sidecar is not None:
        text = sidecar if isinstance(sidecar, str) else json.dumps(sidecar)
        Path(f"{path}.meta.json").write_text(text)
    return path


def symlink(link: Path, target: Path) -> Path:
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)
    return link


def materialize(defs: dg.Definitions, instance: dg.DagsterInstance, step_name: str,
                key: str, *, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        partition_key=key, instance=instance, raise_on_error=raise_on_error,
        asset_selection=[dg.AssetKey(["ccat", PIPELINE, step_name])])


def register_partitions(instance: dg.DagsterInstance,
                        scans: Sequence[tuple[str, str, str]] = SCANS) -> None:
    instance.add_dynamic_partitions(f"{PIPELINE}__executed_obs_unit",
                                    [scan_key(s) for s, _, _ in scans])
    instance.add_dynamic_partitions(f"{PIPELINE}__source+line",
                                    sorted({map_key(src, line) for _, src, line in scans}))


def reduce_all(defs: dg.Definitions, instance: dg.DagsterInstance,
               scans: Sequence[tuple[str, str, str]] = SCANS) -> list[dg.ExecuteInProcessResult]:
    """Calibrate every scan, then grid every source+line: the whole pipeline, for real."""
    register_partitions(instance, scans)
    results = [materialize(defs, instance, "calibrate", scan_key(s)) for s, _, _ in scans]
    results += [materialize(defs, instance, "grid", map_key(src, line))
                for src, line in sorted({(src, line) for _, src, line in scans})]
    return results


def mark(session: Session, run: ExecutedReductionStep, status: RunStatus) -> None:
    run.status = status
    session.flush()
