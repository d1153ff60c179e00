"""Asset checks of a step, per partition: integrity, SCIENCE presence, quality thresholds.

One ``@multi_asset_check`` per step, with partitioned ``AssetCheckSpec``s (a preview feature
of Dagster 1.13; the specs share the step's partitions definition). Dagster runs it right
after the step in the same run, so every materialized sub-group gets its results on its own
partition; because it is a separate, subsettable op reading the ops-db, any single check can
also be re-run later for one partition (e.g. integrity weeks after, from the UI) without
re-running the step. It judges the ops-db run this Dagster run completed, else the newest
completed run of the (step, sub-group).

(No ``from __future__ import annotations`` here: Dagster reads the context annotation.)

Severities: missing or corrupted files and a final step without SCIENCE are ERROR; a quality
threshold violation is WARN unless the threshold says ``severity: error``.
"""


import warnings
from typing import Any

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from ccat_assets.dagster_face.catalog import StepDef
from ccat_assets.opsdb import ExecutedReductionStep
from ccat_assets.results.provenance.verify import (
    FileReport,
    ThresholdReport,
    latest_completed_run,
    science_counts,
    step_id_for,
    thresholds_of_runs,
    verify_files_of_runs,
)
from resources.opsdb import OpsDBResource

FILES = "files_match_checksums"
SCIENCE = "has_science_product"
QUALITY = "quality_thresholds"
MAX_LISTED = 20

ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN


def check_names(step: StepDef) -> list[str]:
    return [FILES, SCIENCE, QUALITY] if step.is_final else [FILES, QUALITY]


_DESCRIPTIONS = {
    FILES: "Every product file recorded on disk exists with its recorded size and checksum.",
    SCIENCE: "The final step recorded at least one SCIENCE product.",
    QUALITY: "Sidecar quality metrics are within the step config's quality_thresholds "
             "(WARN, or ERROR where a threshold says severity: error).",
}


def build_step_checks(asset_key: dg.AssetKey, step: StepDef,
                      partitions_def: dg.PartitionsDefinition | None
                      ) -> dg.AssetChecksDefinition:
    """The checks of one step's asset, evaluated per partition."""
    with warnings.catch_warnings():
        # Partitioned check specs are a preview in Dagster 1.13; we use them on purpose.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        specs = [dg.AssetCheckSpec(name, asset=asset_key, partitions_def=partitions_def,
                                   description=_DESCRIPTIONS[name])
                 for name in check_names(step)]

    @dg.multi_asset_check(
        specs=specs, can_subset=True,
        name=f"{step.pipeline}__{step.name}__checks",
        description=f"Checks of {step.pipeline}/{step.name} per sub-group.",
    )
    def _checks(context: dg.AssetCheckExecutionContext, opsdb: OpsDBResource):
        key = context.partition_key if partitions_def is not None else "all"
        wanted = {k.name for k in context.selected_asset_check_keys}
        with opsdb.sessions().begin() as session:
            results = evaluate_checks(session, step, key, wanted, context.run.run_id)
        for name in check_names(step):
            if name in results:
                yield dg.AssetCheckResult(asset_key=asset_key, check_name=name,
                                          **results[name])

    return _checks


def evaluate_checks(session: Session, step: StepDef, key: str, wanted: set[str],
                    dagster_run_id: str | None, *, run_id: int | None = None
                    ) -> dict[str, dict[str, Any]]:
    """check name -> AssetCheckResult arguments (pure of Dagster state, testable alone).

    ``run_id``: the COMPLETED ops-db run to judge, when the caller knows it (a batch knows
    each member's), instead of looking it up by step and sub-group."""
    if run_id is not None:
        run = session.get(ExecutedReductionStep, run_id)
    else:
        step_id = step_id_for(session, step.pipeline, step.name)
        run = (latest_completed_run(session, step_id, key, dagster_run_id)
               if step_id is not None else None)
    if run is None:
        reason = f"no completed run of {step.pipeline}/{step.name} for sub-group {key}"
        return {name: {"passed": False, "severity": ERROR, "description": reason}
                for name in wanted}
    return judge_runs(session, [run.id], wanted)[run.id]


def judge_runs(session: Session, run_ids: list[int], wanted: set[str]
               ) -> dict[int, dict[str, dict[str, Any]]]:
    """run id -> check name -> AssetCheckResult arguments, for completed runs of one step:
    each check reads what it needs of all the runs at once (a batch judges the members
    that ended together)."""
    runs = session.scalars(sa.select(ExecutedReductionStep)
                           .where(ExecutedReductionStep.id.in_(run_ids))
                           .options(selectinload(ExecutedReductionStep.config))).all()
    ids = [run.id for run in runs]
    results: dict[int, dict[str, dict[str, Any]]] = {run_id: {} for run_id in ids}
    if FILES in wanted:
        for run_id, report in verify_files_of_runs(session, ids).items():
            results[run_id][FILES] = _files(run_id, report)
    if SCIENCE in wanted:
        for run_id, n in science_counts(session, ids).items():
            results[run_id][SCIENCE] = {
                "passed": n > 0, "severity": ERROR,
                "metadata": {"ops-db run id": run_id, "science_products": n},
                "description": None if n else "final step recorded no SCIENCE product"}
    if QUALITY in wanted:
        for run_id, thresholds in thresholds_of_runs(session, runs).items():
            results[run_id][QUALITY] = _quality(run_id, thresholds)
    return results


def _listed(items: list[str]) -> str:
    shown = items[:MAX_LISTED]
    more = len(items) - len(shown)
    return "\n".join(f"- {i}" for i in shown) + (f"\n- ... and {more} more" if more else "")


def _files(run_id: int, report: FileReport) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "ops-db run id": run_id, "verified": report.verified,
        "missing": len(report.missing), "mismatched": len(report.mismatched),
        "fits_checksum_failed": len(report.fits_invalid),
        "freed_by_storage_lifecycle": report.not_on_disk_by_design,
    }
    if report.fits_unverified:
        metadata["fits_checksums_not_verified"] = (
            f"{report.fits_unverified} FITS product(s): astropy is not installed")
    if not report.passed:
        metadata["problems"] = dg.MetadataValue.md(
            _listed([f"missing: {m}" for m in report.missing]
                    + [f"mismatch: {m}" for m in report.mismatched]
                    + [f"FITS checksum: {m}" for m in report.fits_invalid]))
    return {"passed": report.passed, "severity": ERROR, "metadata": metadata}


def _quality(run_id: int, report: ThresholdReport) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "ops-db run id": run_id, "thresholds": dg.MetadataValue.json(report.thresholds),
        "values_evaluated": report.evaluated, "violations": len(report.violations),
    }
    if report.violations:
        metadata["details"] = dg.MetadataValue.md(_listed([v.text() for v in report.violations]))
    return {"passed": report.passed, "severity": ERROR if report.severity == "error" else WARN,
            "metadata": metadata,
            "description": None if report.thresholds else "no quality thresholds configured"}
