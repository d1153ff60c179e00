"""Turn a finished run's files into DataProducts with checksums, sidecars and lineage.

Products are found by the contract's directories: output subfolders of a final step become
SCIENCE, QA_METRIC, PLOT, STATISTICS, LOG; files in an intermediate step's workspace folder
become INTERMEDIATE, except those under its ``logs/`` folder, which are LOG; the run's logs
folder always becomes LOG. Logs are kept for diagnosis even when the run failed, and never
become inputs of a downstream step (those consume everything of an upstream run but its LOG
products). Anything else a run leaves behind is reported as a warning, never silently
recorded or silently lost.

Collecting a run twice records nothing new. The unique constraint on (run, relative path)
makes that true even for two collectors racing on one run: products are inserted with
``ON CONFLICT DO NOTHING`` (PostgreSQL and SQLite alike), so the loser of the race finds the
winner's rows instead of failing, and only rows it inserted itself get a PhysicalCopy and
lineage. Files are hashed before the first write, in a few threads (hashlib releases the
GIL), so no write lock is held while gigabytes are read.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ccat_assets.hashing import file_checksum
from ccat_assets.opsdb import (
    DataProduct,
    DataProductType,
    ExecutedReductionStep,
    PhysicalCopy,
    PhysicalCopyStatus,
    data_product_lineage,
    run_input_data_product,
    run_input_raw_data_package,
)
from ccat_assets.opsdb.types import utcnow
from ccat_assets.results.contract import (
    OUTPUT_TYPES,
    SIDECAR_SUFFIX,
    RunLayout,
    output_logs_dir,
    product_type_for,
    workspace_product_type,
)

#: Threads hashing files at once: enough to overlap I/O with hashing, few enough for a login
#: node. Hashing is CPU-bound on a warm cache, so more threads than cores gain nothing.
HASH_THREADS = max(1, min(4, os.cpu_count() or 1))


class CollectionError(RuntimeError):
    """The outputs break the contract (e.g. a final step with no SCIENCE product)."""


@dataclass(frozen=True)
class FoundFile:
    path: Path
    relative_path: str
    product_type: DataProductType


@dataclass
class CollectResult:
    products: list[DataProduct] = field(default_factory=list)
    new: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Sidecar:
    """What ``<file>.meta.json`` says; ``warning`` is set (and the rest empty) if malformed."""

    metadata: dict[str, Any] = field(default_factory=dict)
    quality_metrics: dict[str, Any] = field(default_factory=dict)
    warning: str | None = None


Classifier = Callable[[Path], DataProductType | None]


def _inside(path: Path, root: Path) -> bool:
    resolved = path.resolve()
    return resolved == root or root in resolved.parents


def discover(layout: RunLayout, is_final: bool, *, logs_only: bool = False) -> tuple[
    list[FoundFile], list[str]
]:
    """The product files of a run and warnings about every file that is not one.

    Symlinks are followed only when they resolve inside the run directory: a program must
    not be able to make the archive record (and later delete) a file it does not own. With
    ``logs_only`` (a failed run) only the log folders are read: the run's ``logs/`` and
    ``$WORKFLOW_OUTPUT_DIR/logs/``, wherever the program kept its logs.
    """
    found: list[FoundFile] = []
    warnings: list[str] = []
    root = layout.root.resolve()

    def walk(base: Path, classify: Classifier) -> None:
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            here = Path(dirpath)
            for name in sorted(dirnames):
                if (here / name).is_symlink():
                    warnings.append(f"{_rel(here / name, layout)}: symlinked directory, "
                                    "not followed")
            dirnames.sort()
            for name in sorted(filenames):
                path = here / name
                rel = _rel(path, layout)
                if name.endswith(SIDECAR_SUFFIX) or name.startswith("."):
                    continue
                if not _utf8(rel):
                    warnings.append(f"{ascii(rel)}: file name is not valid UTF-8, not a product")
                    continue
                if path.is_symlink() and not _inside(path, root):
                    warnings.append(f"{rel}: symlink pointing outside the run directory, rejected")
                    continue
                if not path.is_file():
                    warnings.append(f"{rel}: not a regular file (dangling link?), skipped")
                    continue
                product_type = classify(path)
                if product_type is None:
                    warnings.append(f"{rel}: not under one of output/{{{','.join(OUTPUT_TYPES)}}}"
                                    ", not a product")
                    continue
                found.append(FoundFile(path, rel, product_type))

    if logs_only:
        walk(output_logs_dir(layout, is_final), lambda p: DataProductType.LOG)
    elif is_final:
        walk(layout.output_dir, lambda p: product_type_for(_under(p, layout.output_dir)))
    else:
        walk(layout.workspace_dir,
             lambda p: workspace_product_type(_under(p, layout.workspace_dir)))
        _warn_unused_outputs(layout, warnings)
    walk(layout.logs_dir, lambda p: DataProductType.LOG)
    return found, warnings


def _under(path: Path, base: Path) -> PurePosixPath:
    """``path`` relative to ``base``, as the contract's rules read it."""
    return PurePosixPath(path.relative_to(base).as_posix())


def _utf8(text: str) -> bool:
    """Whether a path can be stored as text (undecodable bytes arrive as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _rel(path: Path, layout: RunLayout) -> str:
    return path.relative_to(layout.root).as_posix()


def _warn_unused_outputs(layout: RunLayout, warnings: list[str]) -> None:
    """An intermediate step's products live in its workspace; say so if it wrote output/."""
    if not layout.output_dir.is_dir():
        return
    stray = sum(1 for _d, _s, files in os.walk(layout.output_dir) for _f in files)
    if stray:
        warnings.append(f"output/: {stray} file(s) written by an intermediate step are not "
                        "products (its WORKFLOW_OUTPUT_DIR is its workspace folder)")


def read_sidecar(path: Path) -> Sidecar:
    """Metadata and quality metrics from ``<file>.meta.json``, if there is one.

    A malformed sidecar never costs the product: the product is kept without metadata and
    the problem is recorded as a warning on it.
    """
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if not sidecar.is_file():
        return Sidecar()
    try:
        data = json.loads(sidecar.read_text(), parse_constant=_reject_constant)
        if not isinstance(data, dict):
            raise ValueError("top level is not an object")
        metadata = data.get("metadata", {})
        metrics = data.get("quality_metrics", {})
        if not isinstance(metadata, dict) or not isinstance(metrics, dict):
            raise ValueError("'metadata' and 'quality_metrics' must be objects")
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        return Sidecar(warning=f"malformed sidecar {sidecar.name}: {_short(exc)}")
    # Thresholds compare numbers: anything else is dropped, the rest of the sidecar kept.
    bad = sorted(k for k, v in metrics.items() if not _is_metric(v))
    metrics = {k: v for k, v in metrics.items() if k not in bad}
    problem = _unstorable(metadata) or _unstorable(metrics)
    if problem:
        return Sidecar(warning=f"malformed sidecar {sidecar.name}: {problem}")
    if bad:
        return Sidecar(metadata=metadata, quality_metrics=metrics,
                       warning=f"sidecar {sidecar.name}: quality metrics "
                               f"{_short(repr(bad))} are not finite numbers, ignored")
    return Sidecar(metadata=metadata, quality_metrics=metrics)


def _short(text: object, limit: int = 300) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."


def _unstorable(value: Any) -> str | None:
    """Why ``value`` cannot be stored as JSON by every ops-db (PostgreSQL's JSONB refuses
    NaN and infinities, NUL characters and lone surrogates), or None."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except ValueError as exc:  # UnicodeEncodeError included
        return f"not storable as JSON ({_short(exc, 120)})"
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and "\x00" in item:
            return "holds a NUL character, which the ops-db cannot store"
    return None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _is_metric(value: Any) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def product_format(path: Path) -> str | None:
    """``fits``, ``txt``, ``fits.gz``: the file's format by its suffix."""
    suffixes = [s.lstrip(".").lower() for s in path.suffixes]
    if not suffixes:
        return None
    if suffixes[-1] in ("gz", "bz2", "xz", "zst") and len(suffixes) > 1:
        return ".".join(suffixes[-2:])
    return suffixes[-1]


def checksums(paths: Sequence[Path], threads: int = HASH_THREADS) -> list[str]:
    """Streamed ``sha256:`` checksums of ``paths``, in order, hashed in parallel."""
    if threads <= 1 or len(paths) <= 1:
        return [file_checksum(p) for p in paths]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ccat-hash") as pool:
        return list(pool.map(file_checksum, paths))


@dataclass(frozen=True)
class DiscoveredProducts:
    """A run's product files, hashed, their sidecars read: everything its collection writes,
    computed from the files alone, before any transaction."""

    found: list[FoundFile]
    #: One DataProduct row per found file, in the same order, but for the run id.
    rows: list[dict[str, Any]]
    warnings: list[str]


def collect_run(
    session: Session,
    run: ExecutedReductionStep,
    layout: RunLayout,
    *,
    is_final: bool,
    processing_location_id: int,
    logs_only: bool = False,
) -> CollectResult:
    """Record the run's products, physical copies and lineage (idempotent, race-safe):
    :func:`discover_products`, then :func:`record_products`."""
    return record_products(session, run, discover_products(layout, is_final,
                                                           logs_only=logs_only),
                           processing_location_id=processing_location_id)


def discover_products(layout: RunLayout, is_final: bool, *, logs_only: bool = False
                      ) -> DiscoveredProducts:
    """The run's product files with their checksums and sidecars; :class:`CollectionError`
    if a final step wrote no SCIENCE product. Reads files only, so a caller hashes them
    before it opens a transaction (no write lock is held while gigabytes are read)."""
    found, warnings = discover(layout, is_final, logs_only=logs_only)
    warnings = list(warnings)
    if is_final and not logs_only and not any(
        f.product_type == DataProductType.SCIENCE for f in found
    ):
        raise CollectionError(
            "final step wrote no SCIENCE product (expected files under output/science/)"
        )
    return DiscoveredProducts(found, _product_rows(found, warnings), warnings)


def record_products(session: Session, run: ExecutedReductionStep,
                    discovered: DiscoveredProducts, *, processing_location_id: int
                    ) -> CollectResult:
    """Record what :func:`discover_products` found: :func:`record_products_of_runs` for one
    run."""
    return record_products_of_runs(session, [(run, discovered)],
                                   processing_location_id=processing_location_id)[run.id]


def record_products_of_runs(
    session: Session, runs: Sequence[tuple[ExecutedReductionStep, DiscoveredProducts]], *,
    processing_location_id: int,
) -> dict[int, CollectResult]:
    """Record what :func:`discover_products` found for each run: the products not recorded
    yet, a PRESENT copy of each at the processing location, their lineage; every found
    product in each run's result.

    Why many runs at once: the members of a batch that ended together are recorded in a
    handful of statements (one insert of all their products, of all copies, of all
    lineage), not a handful each."""
    ids = [run.id for run, _ in runs]
    known: dict[int, set[str]] = {run_id: set() for run_id in ids}
    for run_id, path in session.execute(
            sa.select(DataProduct.executed_reduction_step_id, DataProduct.relative_path)
            .where(DataProduct.executed_reduction_step_id.in_(ids))):
        known[run_id].add(path)
    todo = [(run.id, f, {**row, "executed_reduction_step_id": run.id})
            for run, found in runs
            for f, row in zip(found.found, found.rows, strict=True)
            if f.relative_path not in known[run.id]]
    inserted = _insert_products(session, [row for _, _, row in todo])
    if inserted:
        _record_copies_and_lineage(session, inserted, todo, processing_location_id)
    recorded: dict[int, dict[str, DataProduct]] = {run_id: {} for run_id in ids}
    for product in session.scalars(
            sa.select(DataProduct).where(DataProduct.executed_reduction_step_id.in_(ids))
            .execution_options(populate_existing=True)):
        recorded[product.executed_reduction_step_id][product.relative_path] = product
    results: dict[int, CollectResult] = {}
    for run, found in runs:
        by_path = recorded[run.id]
        results[run.id] = CollectResult(
            products=[by_path[f.relative_path] for f in found.found
                      if f.relative_path in by_path],
            new=sum(1 for run_id, _ in inserted if run_id == run.id),
            warnings=list(found.warnings))
    return results


def _product_rows(files: Iterable[FoundFile], warnings: list[str]) -> list[dict[str, Any]]:
    """Everything a DataProduct row needs but its run, computed before the transaction
    writes anything."""
    files = list(files)
    sums = checksums([f.path for f in files])
    rows = []
    for item, checksum in zip(files, sums, strict=True):
        sidecar = read_sidecar(item.path)
        if sidecar.warning:
            warnings.append(f"{item.relative_path}: {sidecar.warning}")
        rows.append({
            "name": item.path.name,
            "relative_path": item.relative_path,
            "data_product_type": item.product_type,
            "format": product_format(item.path),
            "size_bytes": item.path.stat().st_size,
            "checksum": checksum,
            "meta": sidecar.metadata,
            "quality_metrics": sidecar.quality_metrics,
            "warnings": [sidecar.warning] if sidecar.warning else [],
        })
    return rows


def _insert_products(session: Session, rows: list[dict[str, Any]]
                     ) -> dict[tuple[int, str], int]:
    """Insert rows that are not there yet; (run id, relative path) -> id of the rows *this*
    call made."""
    if not rows:
        return {}
    table = DataProduct.__table__
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" \
        else sqlite.insert
    now = utcnow()
    # one compiled statement whatever the number of rows, executed as multi-row VALUES
    # batches by the driver (SQLAlchemy's "insertmanyvalues"), RETURNING included
    statement = (
        insert(table)
        .on_conflict_do_nothing(index_elements=["executed_reduction_step_id", "relative_path"])
        .returning(table.c.id, table.c.executed_reduction_step_id, table.c.relative_path)
    )
    result = session.execute(statement, [{**_columns(row), "created_at": now, "updated_at": now}
                                         for row in rows])
    return {(run_id, path): pid for pid, run_id, path in result}


def _columns(row: dict[str, Any]) -> dict[str, Any]:
    """ORM attribute names -> column names (``meta`` is stored as ``metadata``)."""
    out = dict(row)
    out["metadata"] = out.pop("meta")
    return out


def _record_copies_and_lineage(
    session: Session, inserted: dict[tuple[int, str], int],
    todo: list[tuple[int, FoundFile, dict[str, Any]]], processing_location_id: int,
) -> None:
    """A PRESENT copy at the processing location and the flat raw lineage of new products."""
    now = utcnow()
    made = [(inserted[(run_id, f.relative_path)], run_id, f, row) for run_id, f, row in todo
            if (run_id, f.relative_path) in inserted]
    session.execute(sa.insert(PhysicalCopy), [
        {"data_product_id": pid, "data_location_id": processing_location_id,
         "status": PhysicalCopyStatus.PRESENT, "path": str(f.path),
         "checksum": row["checksum"], "verified_at": now}
        for pid, _, f, row in sorted(made, key=lambda m: m[0])
    ])
    raw_ids = _lineage_raw_ids(session, sorted({run_id for _, run_id, _, _ in made}))
    lineage = [{"data_product_id": pid, "raw_data_package_id": rid}
               for pid, run_id, _, _ in sorted(made, key=lambda m: m[0])
               for rid in sorted(raw_ids.get(run_id, ()))]
    if lineage:
        session.execute(sa.insert(data_product_lineage), lineage)


def _lineage_raw_ids(session: Session, run_ids: list[int]) -> dict[int, set[int]]:
    """Every raw package each run descends from: its own raw inputs and its input
    products'."""
    raw = run_input_raw_data_package.c
    up = run_input_data_product.c
    rows = session.execute(sa.union(
        sa.select(raw.executed_reduction_step_id, raw.raw_data_package_id)
        .where(raw.executed_reduction_step_id.in_(run_ids)),
        sa.select(up.executed_reduction_step_id, data_product_lineage.c.raw_data_package_id)
        .join(data_product_lineage,
              up.data_product_id == data_product_lineage.c.data_product_id)
        .where(up.executed_reduction_step_id.in_(run_ids))))
    found: dict[int, set[int]] = {}
    for run_id, raw_id in rows:
        found.setdefault(run_id, set()).add(raw_id)
    return found
