"""What the asset checks verify about one run's products, without Dagster.

- every file recorded as being on disk at the processing location exists there with its
  recorded size and checksum (copies the storage lifecycle deleted are not expected);
- a FITS product's own checksums (the CHECKSUM/DATASUM cards a program writes with
  ``writeto(..., checksum=True)``) match its header and data: this also catches a file
  damaged before it was collected, which the recorded sha256 cannot
  (``ccat_assets.results.fits_integrity``);
- a final step recorded at least one SCIENCE product;
- the quality metrics products reported in their sidecars are within the step config's
  ``quality_thresholds`` (``{metric: {min, max, severity}}``; severity ``warn`` unless
  ``error`` is given).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ccat_assets.opsdb import (
    DataProduct,
    DataProductType,
    ExecutedReductionStep,
    PhysicalCopy,
    PhysicalCopyStatus,
    Pipeline,
    ReductionStep,
    RunStatus,
)
from ccat_assets.opsdb.types import utcnow
from ccat_assets.results.collect import checksums
from ccat_assets.results.fits_integrity import (
    FitsVerificationUnavailable,
    fits_checksum_problems,
    is_fits,
)

#: Copies that must be on disk: written by collection, not (yet) freed by the janitor.
ON_DISK = (PhysicalCopyStatus.PRESENT, PhysicalCopyStatus.DELETION_POSSIBLE)
SEVERITIES = ("warn", "error")


@dataclass
class FileReport:
    verified: int = 0
    not_on_disk_by_design: int = 0
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    #: FITS products whose CHECKSUM/DATASUM cards do not match, with astropy's reason.
    fits_invalid: list[str] = field(default_factory=list)
    #: FITS products whose checksums could not be verified (no astropy): never a pass.
    fits_unverified: int = 0

    @property
    def passed(self) -> bool:
        return not self.missing and not self.mismatched and not self.fits_invalid


@dataclass(frozen=True)
class Violation:
    metric: str
    product: str
    value: float | None
    bound: str
    severity: str

    def text(self) -> str:
        if self.value is None:
            return f"{self.metric}: reported by no product ({self.bound})"
        return f"{self.product}: {self.metric} = {self.value:g} violates {self.bound}"


@dataclass
class ThresholdReport:
    thresholds: dict[str, Any]
    evaluated: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations

    @property
    def severity(self) -> str:
        """``error`` if any violated threshold asks for it, else ``warn``."""
        return "error" if any(v.severity == "error" for v in self.violations) else "warn"


def latest_completed_run(session: Session, step_id: int, sub_group_key: str,
                         dagster_run_id: str | None = None) -> ExecutedReductionStep | None:
    """The run a check judges: the one this Dagster run completed, else the newest completed."""
    ers = ExecutedReductionStep
    query = (sa.select(ers).where(ers.reduction_step_id == step_id,
                                  ers.sub_group_key == sub_group_key,
                                  ers.status == RunStatus.COMPLETED)
             .order_by(ers.id.desc()))
    if dagster_run_id:
        mine = session.scalar(query.where(ers.dagster_run_id == dagster_run_id).limit(1))
        if mine is not None:
            return mine
    return session.scalar(query.limit(1))


def step_id_for(session: Session, pipeline: str, step: str) -> int | None:
    return session.scalar(sa.select(ReductionStep.id).join(Pipeline)
                          .where(Pipeline.name == pipeline, ReductionStep.name == step))


def verify_files(session: Session, run_id: int) -> FileReport:
    """Re-hash every on-disk copy of the run's products; stamp ``verified_at`` on success."""
    return verify_files_of_runs(session, [run_id])[run_id]


def verify_files_of_runs(session: Session, run_ids: Sequence[int]) -> dict[int, FileReport]:
    """:func:`verify_files` for many runs: one query for all their copies, and their files
    hashed together, in parallel (a batch checks the members that ended together)."""
    reports = {run_id: FileReport() for run_id in run_ids}
    rows = session.execute(
        sa.select(PhysicalCopy, DataProduct.executed_reduction_step_id,
                  DataProduct.relative_path, DataProduct.size_bytes, DataProduct.checksum)
        .join(DataProduct, DataProduct.id == PhysicalCopy.data_product_id)
        .where(DataProduct.executed_reduction_step_id.in_(list(reports)))
        .order_by(DataProduct.executed_reduction_step_id, DataProduct.relative_path)
    ).all()
    on_disk = []
    for copy, run_id, rel, size, checksum in rows:
        report = reports[run_id]
        if copy.status not in ON_DISK:
            report.not_on_disk_by_design += 1
            continue
        path = Path(copy.path)
        if not path.is_file():
            report.missing.append(rel)
        elif path.stat().st_size != size:
            report.mismatched.append(f"{rel} (size {path.stat().st_size}, recorded {size})")
        else:
            on_disk.append((copy, reports[run_id], rel, path, checksum))
    actual = checksums([p for _c, _r, _rel, p, _s in on_disk])
    now = utcnow()
    for (copy, report, rel, path, recorded), found in zip(on_disk, actual, strict=True):
        fits_ok = _verify_fits(report, rel, path)
        if found != recorded:
            report.mismatched.append(f"{rel} (checksum {found}, recorded {recorded})")
        elif fits_ok:
            copy.verified_at = now
            report.verified += 1
    return reports


def _verify_fits(report: FileReport, rel: str, path: Path) -> bool:
    """Check a FITS product's own checksums into ``report``; True if nothing is wrong."""
    if not is_fits(path):
        return True
    try:
        problems = fits_checksum_problems(path)
    except FitsVerificationUnavailable:
        report.fits_unverified += 1
        return True
    report.fits_invalid += [f"{rel}: {problem}" for problem in problems]
    return not problems


def science_counts(session: Session, run_ids: Sequence[int]) -> dict[int, int]:
    """How many SCIENCE products each run recorded, in one query."""
    counts = dict.fromkeys(run_ids, 0)
    run = DataProduct.executed_reduction_step_id
    counts.update(session.execute(  # type: ignore[arg-type]
        sa.select(run, sa.func.count()).where(
            run.in_(list(counts)), DataProduct.data_product_type == DataProductType.SCIENCE)
        .group_by(run)).all())
    return counts


def evaluate_thresholds(thresholds: dict[str, Any],
                        products: list[tuple[str, dict[str, Any]]]) -> ThresholdReport:
    """Check each product's metrics against ``thresholds``.

    A threshold whose metric no product reports is a violation too: a silently unchecked
    threshold would read as a pass.
    """
    report = ThresholdReport(thresholds=thresholds)
    for metric, spec in sorted(thresholds.items()):
        spec = spec or {}
        severity = str(spec.get("severity", "warn")).lower()
        severity = severity if severity in SEVERITIES else "warn"
        low, high = spec.get("min"), spec.get("max")
        bound = _bound(low, high)
        seen = False
        for rel, metrics in products:
            if metric not in metrics:
                continue
            seen = True
            report.evaluated += 1
            value = metrics[metric]
            number = float(value) if isinstance(value, int | float) else math.nan
            if (math.isnan(number) or (low is not None and number < low)
                    or (high is not None and number > high)):
                report.violations.append(Violation(metric, rel, number, bound, severity))
        if not seen:
            report.violations.append(Violation(metric, "", None, bound, severity))
    return report


def _bound(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{low:g} <= x <= {high:g}"
    if low is not None:
        return f"x >= {low:g}"
    if high is not None:
        return f"x <= {high:g}"
    return "no bound"


def thresholds_of_runs(session: Session, runs: Sequence[ExecutedReductionStep]
                       ) -> dict[int, ThresholdReport]:
    """Each run's config thresholds against its products' metrics, read in one query."""
    metrics: dict[int, list[tuple[str, dict[str, Any]]]] = {run.id: [] for run in runs}
    for run_id, rel, values in session.execute(
            sa.select(DataProduct.executed_reduction_step_id, DataProduct.relative_path,
                      DataProduct.quality_metrics)
            .where(DataProduct.executed_reduction_step_id.in_(list(metrics)),
                   DataProduct.data_product_type != DataProductType.LOG)
            .order_by(DataProduct.executed_reduction_step_id, DataProduct.relative_path)):
        metrics[run_id].append((rel, dict(values or {})))
    return {run.id: evaluate_thresholds(dict(run.config.quality_thresholds or {}),
                                        metrics[run.id]) for run in runs}
