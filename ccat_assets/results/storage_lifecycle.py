"""Intermediate products at the processing location: PRESENT -> DELETION_POSSIBLE -> DELETED.

An intermediate's copy becomes DELETION_POSSIBLE once nothing is expected to read it again:
every downstream step's sub-groups covering its raw data have completed with it (their newest
run is COMPLETED and used it), or a newer completed run of its own (step, sub-group) has
superseded it. The status is recomputed on every pass, so it goes back to PRESENT when new
data puts it in a consumer's scope again.

Space is freed only under disk pressure (free space below ``WORKSPACE_GC_MIN_FREE_GB`` or
``WORKSPACE_GC_MIN_FREE_PERCENT``), oldest first, until both thresholds hold again. Never
freed: anything a PENDING or in-flight run uses, and any product of a final step or of a type
other than INTERMEDIATE. Each deletion is claimed (DELETION_IN_PROGRESS) in a short
transaction that re-checks the in-flight consumers, then the files are removed (the copy and
the hard links finished consumer runs hold under ``input/products``, so the space is really
freed), then the copy is recorded DELETED with ``deleted_at``. A crash in between leaves
DELETION_IN_PROGRESS, which the next pass finishes. A reprocessing that needs a freed
intermediate has to recompute it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from ccat_assets.grouping import resolve_subgroups
from ccat_assets.opsdb import (
    IN_FLIGHT_STATUSES,
    DataLocation,
    DataProduct,
    DataProductType,
    ExecutedReductionStep,
    PhysicalCopy,
    PhysicalCopyStatus,
    ReductionStep,
    RunStatus,
    reduction_step_dependency,
    run_input_data_product,
    run_input_raw_data_package,
)
from ccat_assets.opsdb.types import utcnow
from ccat_assets.paths import UnsafePath, join_inside
from ccat_assets.results.contract import RunLayout

ERS = ExecutedReductionStep
CS = PhysicalCopyStatus
GB = 1_000_000_000
CHUNK = 2000
#: Copies the refresh judges; DELETION_POSSIBLE may go back to PRESENT.
JUDGED = (CS.PRESENT, CS.DELETION_POSSIBLE)
#: Copies a deletion pass may take (failed and interrupted ones are retried).
DELETABLE = (CS.DELETION_POSSIBLE, CS.DELETION_FAILED, CS.DELETION_IN_PROGRESS)


class LocationNotFound(LookupError):
    """PROCESSING_LOCATION_ID names no DataLocation."""


@dataclass(frozen=True)
class DiskUsage:
    total: int
    free: int

    @property
    def free_percent(self) -> float:
        return 100.0 * self.free / self.total if self.total else 100.0


@dataclass(frozen=True)
class Thresholds:
    min_free_gb: float
    min_free_percent: float

    def bytes_needed(self, usage: DiskUsage) -> int:
        """How many bytes to free so that both thresholds hold (0: no pressure)."""
        want = max(self.min_free_gb * GB, self.min_free_percent / 100.0 * usage.total)
        return max(0, int(want) - usage.free)


@dataclass(frozen=True)
class Candidate:
    copy_id: int
    product_id: int
    path: str
    size_bytes: int
    status: str


@dataclass
class GcReport:
    location: str
    dry_run: bool
    usage_before: DiskUsage | None = None
    usage_after: DiskUsage | None = None
    bytes_needed: int = 0
    marked_possible: int = 0
    marked_present: int = 0
    deleted: list[Candidate] = field(default_factory=list)
    bytes_freed: int = 0
    failed: list[str] = field(default_factory=list)
    skipped_in_use: int = 0

    def to_json(self) -> dict[str, object]:
        def usage(u: DiskUsage | None) -> dict[str, object] | None:
            return None if u is None else {"total": u.total, "free": u.free,
                                           "free_percent": round(u.free_percent, 2)}
        return {"location": self.location, "dry_run": self.dry_run,
                "usage_before": usage(self.usage_before), "usage_after": usage(self.usage_after),
                "bytes_needed": self.bytes_needed, "marked_deletion_possible":
                self.marked_possible, "marked_present_again": self.marked_present,
                "deleted": [{"copy_id": c.copy_id, "product_id": c.product_id, "path": c.path,
                             "size_bytes": c.size_bytes} for c in self.deleted],
                "bytes_freed": self.bytes_freed, "failed": self.failed,
                "skipped_in_use": self.skipped_in_use}

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        size = sum(c.size_bytes for c in self.deleted)
        text = (f"{self.location}: {self.marked_possible} copy(ies) newly deletable, "
                f"{self.marked_present} back to present; {verb} {len(self.deleted)} "
                f"({size / GB:.3f} GB recorded")
        text += ")" if self.dry_run else f", {self.bytes_freed / GB:.3f} GB freed on disk)"
        if self.bytes_needed:
            text += f"; pressure: {self.bytes_needed / GB:.3f} GB needed"
        if self.failed:
            text += f"; {len(self.failed)} failed"
        return text


def processing_location(session: Session, setting: str) -> DataLocation:
    """The DataLocation ``PROCESSING_LOCATION_ID`` names (an id or a name)."""
    setting = setting.strip()
    location = (session.get(DataLocation, int(setting)) if setting.isdigit()
                else session.scalar(sa.select(DataLocation).filter_by(name=setting)))
    if location is None:
        raise LocationNotFound(f"PROCESSING_LOCATION_ID {setting!r} names no data location")
    return location


def disk_usage(path: Path) -> DiskUsage:
    """Usage of the filesystem holding ``path`` (its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    return DiskUsage(total=usage.total, free=usage.free)


# --- PRESENT <-> DELETION_POSSIBLE -----------------------------------------------------------

def _chunks(ids: Collection[int]) -> Iterable[list[int]]:
    ordered = sorted(ids)
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start:start + CHUNK]


def _judged_copies(session: Session, location_id: int) -> list[tuple[int, int, int, str]]:
    """(copy id, product id, run id, status) of intermediates of steps something consumes."""
    consumed = sa.select(reduction_step_dependency.c.depends_on_step_id)
    return [tuple(r) for r in session.execute(
        sa.select(PhysicalCopy.id, DataProduct.id, ERS.id, PhysicalCopy.status)
        .join(DataProduct, DataProduct.id == PhysicalCopy.data_product_id)
        .join(ERS, ERS.id == DataProduct.executed_reduction_step_id)
        .where(PhysicalCopy.data_location_id == location_id,
               PhysicalCopy.status.in_(JUDGED),
               DataProduct.data_product_type == DataProductType.INTERMEDIATE,
               ERS.reduction_step_id.in_(consumed)))]


def judge(session: Session, location_id: int) -> dict[int, PhysicalCopyStatus]:
    """copy id -> the status the location's intermediates should have, where it changes."""
    copies = _judged_copies(session, location_id)
    if not copies:
        return {}
    runs = {r.id: r for chunk in _chunks({c[2] for c in copies})
            for r in session.scalars(sa.select(ERS).where(ERS.id.in_(chunk)))}
    done = _finished_with(session, runs, {c[1] for c in copies})
    changes = {}
    for cid, pid, _run, status in copies:
        wanted = CS.DELETION_POSSIBLE if pid in done else CS.PRESENT
        if wanted != status:
            changes[cid] = wanted
    return changes


def refresh_deletion_possible(session: Session, location_id: int) -> dict[int, PhysicalCopyStatus]:
    """Recompute DELETION_POSSIBLE for the location's intermediates; returns the changes."""
    changes = judge(session, location_id)
    for status in (CS.DELETION_POSSIBLE, CS.PRESENT):
        ids = [cid for cid, wanted in changes.items() if wanted == status]
        for chunk in _chunks(ids):
            session.execute(sa.update(PhysicalCopy).where(PhysicalCopy.id.in_(chunk))
                            .values(status=status, updated_at=utcnow()))
    return changes


def _finished_with(session: Session, runs: dict[int, ExecutedReductionStep],
                   product_ids: set[int]) -> set[int]:
    """Those of ``product_ids`` (made by ``runs``) nothing is expected to read again."""
    products = _products_by_run(session, product_ids)
    superseded = _superseded(session, runs.values())
    in_use = in_flight_consumers(session, product_ids)
    done: set[int] = set()
    by_step: dict[int, list[ExecutedReductionStep]] = {}
    for run in runs.values():
        if run.id in superseded:
            done |= products.get(run.id, set())
        else:
            by_step.setdefault(run.reduction_step_id, []).append(run)
    for step_id, step_runs in by_step.items():
        done |= _consumed_everywhere(session, step_id, step_runs, products)
    return done - in_use


def _products_by_run(session: Session, product_ids: set[int]) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    for chunk in _chunks(product_ids):
        for pid, rid in session.execute(sa.select(DataProduct.id,
                                                  DataProduct.executed_reduction_step_id)
                                        .where(DataProduct.id.in_(chunk))):
            out.setdefault(rid, set()).add(pid)
    return out


def _superseded(session: Session, runs: Iterable[ExecutedReductionStep]) -> set[int]:
    """Runs with a newer COMPLETED run of the same (step, sub-group)."""
    newer = sa.orm.aliased(ERS)
    ids = [r.id for r in runs]
    out: set[int] = set()
    for chunk in _chunks(ids):
        out |= set(session.scalars(sa.select(ERS.id).where(
            ERS.id.in_(chunk),
            sa.select(newer.id).where(newer.reduction_step_id == ERS.reduction_step_id,
                                      newer.sub_group_key == ERS.sub_group_key,
                                      newer.status == RunStatus.COMPLETED,
                                      newer.id > ERS.id).exists())))
    return out


def in_flight_consumers(session: Session, product_ids: Collection[int]) -> set[int]:
    """Those of ``product_ids`` a PENDING or running run has among its inputs."""
    out: set[int] = set()
    for chunk in _chunks(product_ids):
        out |= set(session.scalars(
            sa.select(run_input_data_product.c.data_product_id)
            .join(ERS, ERS.id == run_input_data_product.c.executed_reduction_step_id)
            .where(run_input_data_product.c.data_product_id.in_(chunk),
                   ERS.status.in_(IN_FLIGHT_STATUSES))))
    return out


def _consumed_everywhere(session: Session, step_id: int, runs: list[ExecutedReductionStep],
                         products: dict[int, set[int]]) -> set[int]:
    """Products of ``runs`` (of step ``step_id``) every downstream sub-group completed with.

    A downstream sub-group covers a run when it holds one of the run's raw packages; it has
    completed with a product when its newest run is COMPLETED and used that product.
    """
    step = session.get(ReductionStep, step_id)
    downstream = list(session.scalars(
        sa.select(ReductionStep).join(reduction_step_dependency,
                                      reduction_step_dependency.c.reduction_step_id
                                      == ReductionStep.id)
        .where(reduction_step_dependency.c.depends_on_step_id == step_id)))
    raw = _raw_by_run(session, [r.id for r in runs])
    grouping = step.pipeline.data_grouping
    all_raw = set().union(*raw.values()) if raw else set()
    ok = {run.id: set(products.get(run.id, set())) for run in runs}
    for consumer in downstream:
        keys_of_raw: dict[int, set[str]] = {}
        for sg in resolve_subgroups(session, filter_rules=grouping.filter_rules,
                                    group_by=list(consumer.group_by),
                                    instrument_module_id=grouping.instrument_module_id,
                                    package_ids=sorted(all_raw)):
            for rid in sg.raw_data_package_ids:
                keys_of_raw.setdefault(rid, set()).add(sg.key)
        used = _used_by_newest(session, consumer.id,
                               {k for keys in keys_of_raw.values() for k in keys})
        for run in runs:
            keys = {k for rid in raw.get(run.id, ()) for k in keys_of_raw.get(rid, ())}
            for key in keys:
                ok[run.id] &= used.get(key, set())
    return set().union(*ok.values()) if ok else set()


def _raw_by_run(session: Session, run_ids: list[int]) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    t = run_input_raw_data_package
    for chunk in _chunks(run_ids):
        for run_id, rid in session.execute(
                sa.select(t.c.executed_reduction_step_id, t.c.raw_data_package_id)
                .where(t.c.executed_reduction_step_id.in_(chunk))):
            out.setdefault(run_id, set()).add(rid)
    return out


def _used_by_newest(session: Session, step_id: int, keys: set[str]) -> dict[str, set[int]]:
    """key -> input product ids of the newest run of (step, key), if that run COMPLETED."""
    newest: dict[str, tuple[int, str]] = {}
    key_list = sorted(keys)
    for start in range(0, len(key_list), CHUNK):
        for run_id, key, status in session.execute(
            sa.select(ERS.id, ERS.sub_group_key, ERS.status)
            .where(ERS.reduction_step_id == step_id,
                   ERS.sub_group_key.in_(key_list[start:start + CHUNK]))
            .order_by(ERS.id)
        ):
            newest[key] = (run_id, str(status))
    completed = {run_id: key for key, (run_id, status) in newest.items()
                 if status == RunStatus.COMPLETED}
    used: dict[str, set[int]] = {key: set() for key in completed.values()}
    t = run_input_data_product
    for chunk in _chunks(completed):
        for run_id, pid in session.execute(
                sa.select(t.c.executed_reduction_step_id, t.c.data_product_id)
                .where(t.c.executed_reduction_step_id.in_(chunk))):
            used[completed[run_id]].add(pid)
    return used


def freed_products(session: Session, product_ids: Collection[int]) -> set[int]:
    """Those of ``product_ids`` that have copies but none on disk any more (the janitor freed
    them): a run that needs them must recompute them first. Products without any copy are not
    reported (nothing says they are gone)."""
    on_disk = (CS.PRESENT, CS.DELETION_POSSIBLE, CS.STAGED)
    out: set[int] = set()
    for chunk in _chunks(product_ids):
        out |= set(session.scalars(
            sa.select(PhysicalCopy.data_product_id)
            .where(PhysicalCopy.data_product_id.in_(chunk))
            .group_by(PhysicalCopy.data_product_id)
            .having(sa.func.sum(sa.case((PhysicalCopy.status.in_(on_disk), 1), else_=0)) == 0)))
    return out


# --- deletion --------------------------------------------------------------------------------

def deletable(session: Session, location_id: int,
              changes: dict[int, PhysicalCopyStatus] | None = None) -> list[Candidate]:
    """Copies that may be deleted now, interrupted deletions first, then oldest first.

    ``changes`` (from :func:`judge`) are applied on the fly: a dry run sees what a real pass
    would see without writing anything.
    """
    changes = changes or {}
    consumed = sa.select(reduction_step_dependency.c.depends_on_step_id)
    rows = session.execute(
        sa.select(PhysicalCopy.id, DataProduct.id, PhysicalCopy.path, DataProduct.size_bytes,
                  PhysicalCopy.status)
        .join(DataProduct, DataProduct.id == PhysicalCopy.data_product_id)
        .join(ERS, ERS.id == DataProduct.executed_reduction_step_id)
        .where(PhysicalCopy.data_location_id == location_id,
               PhysicalCopy.status.in_((*DELETABLE, CS.PRESENT)),
               DataProduct.data_product_type == DataProductType.INTERMEDIATE,
               ERS.reduction_step_id.in_(consumed))
        .order_by(sa.case((PhysicalCopy.status == CS.DELETION_IN_PROGRESS, 0), else_=1),
                  DataProduct.created_at, DataProduct.id)).all()
    rows = [(cid, pid, path, size, changes.get(cid, CS(status)))
            for cid, pid, path, size, status in rows]
    rows = [r for r in rows if r[4] in DELETABLE]
    in_use = in_flight_consumers(session, {r[1] for r in rows})
    return [Candidate(cid, pid, path, size, str(status))
            for cid, pid, path, size, status in rows if pid not in in_use]


def plan(candidates: list[Candidate], bytes_needed: int, *, everything: bool = False,
         limit: int | None = None) -> list[Candidate]:
    """The oldest candidates whose sizes add up to ``bytes_needed`` (all with ``everything``);
    interrupted deletions are always finished."""
    chosen: list[Candidate] = []
    total = 0
    for c in candidates:
        if limit is not None and len(chosen) >= limit:
            break
        if not everything and total >= bytes_needed and c.status != CS.DELETION_IN_PROGRESS:
            break
        chosen.append(c)
        total += c.size_bytes
    return chosen


def _claim(sessions: sessionmaker[Session], chosen: list[Candidate]) -> list[Candidate]:
    """Mark DELETION_IN_PROGRESS those still deletable and still unused, atomically."""
    ids = {c.copy_id for c in chosen}
    with sessions.begin() as session:
        rows = session.scalars(sa.select(PhysicalCopy).where(
            PhysicalCopy.id.in_(sorted(ids)), PhysicalCopy.status.in_(DELETABLE))
            .with_for_update()).all()
        in_use = in_flight_consumers(session, {r.data_product_id for r in rows})
        claimed = {r.id for r in rows if r.data_product_id not in in_use}
        for row in rows:
            if row.id in claimed:
                row.status = CS.DELETION_IN_PROGRESS
    return [c for c in chosen if c.copy_id in claimed]


def _consumer_links(session: Session, product_id: int) -> list[Path]:
    """Where finished consumer runs hold the product (``input/products/<step>/<key>/<path>``)."""
    row = session.execute(
        sa.select(DataProduct.relative_path, ERS.sub_group_key, ReductionStep.name)
        .join(ERS, ERS.id == DataProduct.executed_reduction_step_id)
        .join(ReductionStep, ReductionStep.id == ERS.reduction_step_id)
        .where(DataProduct.id == product_id)).one()
    rel, key, step = row
    consumers = session.scalars(
        sa.select(ERS.run_dir)
        .join(run_input_data_product,
              run_input_data_product.c.executed_reduction_step_id == ERS.id)
        .where(run_input_data_product.c.data_product_id == product_id,
               ERS.status.not_in(IN_FLIGHT_STATUSES), ERS.run_dir.is_not(None)))
    links = []
    for run_dir in consumers:
        try:
            base = RunLayout(root=Path(run_dir), step=step).products_input_dir
            links.append(join_inside(base, f"{step}/{key}/{rel}"))
        except UnsafePath:
            continue
    return links


def _remove(paths: Iterable[Path]) -> int:
    """Unlink ``paths``; the bytes actually freed (a file's last link gone)."""
    freed = 0
    for path in paths:
        try:
            st = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            continue
        os.unlink(path)
        if st.st_nlink <= 1:
            freed += st.st_size
    return freed


def delete(sessions: sessionmaker[Session], chosen: list[Candidate], report: GcReport) -> None:
    """Claim, remove the files, record DELETED (or DELETION_FAILED) with ``deleted_at``."""
    for start in range(0, len(chosen), CHUNK):
        claimed = _claim(sessions, chosen[start:start + CHUNK])
        report.skipped_in_use += len(chosen[start:start + CHUNK]) - len(claimed)
        outcome: dict[int, bool] = {}
        for c in claimed:
            try:
                with sessions() as session:
                    links = _consumer_links(session, c.product_id)
                report.bytes_freed += _remove([*links, Path(c.path)])
                outcome[c.copy_id] = True
                report.deleted.append(c)
            except OSError as exc:
                outcome[c.copy_id] = False
                report.failed.append(f"{c.path}: {exc}")
        with sessions.begin() as session:
            now = utcnow()
            for copy in session.scalars(sa.select(PhysicalCopy).where(
                    PhysicalCopy.id.in_(sorted(outcome)))):
                if outcome[copy.id]:
                    copy.status, copy.deleted_at = CS.DELETED, now
                else:
                    copy.status = CS.DELETION_FAILED


def run_gc(
    sessions: sessionmaker[Session], *, location_setting: str, workspace: Path,
    thresholds: Thresholds, dry_run: bool = False, everything: bool = False,
    max_deletions: int | None = None,
    usage: Callable[[Path], DiskUsage] = disk_usage,
) -> GcReport:
    """One janitor pass: refresh DELETION_POSSIBLE, then free space if under pressure."""
    with sessions.begin() as session:
        location = processing_location(session, location_setting)
        report = GcReport(location=location.name, dry_run=dry_run)
        if dry_run:
            changes = judge(session, location.id)
            candidates = deletable(session, location.id, changes)
        else:
            changes = refresh_deletion_possible(session, location.id)
    if not dry_run:
        with sessions() as session:
            candidates = deletable(session, location.id)
    report.marked_possible = sum(1 for s in changes.values() if s == CS.DELETION_POSSIBLE)
    report.marked_present = len(changes) - report.marked_possible
    report.usage_before = usage(workspace)
    report.bytes_needed = thresholds.bytes_needed(report.usage_before)
    chosen = plan(candidates, report.bytes_needed, everything=everything, limit=max_deletions)
    if dry_run:
        report.deleted = chosen
        return report
    delete(sessions, chosen, report)
    report.usage_after = usage(workspace)
    return report
