"""Turn a finished run's files into DataProducts with checksums, sidecars and lineage.

Products are found by the contract's directories: output subfolders of a final step become
SCIENCE, QA_METRIC, PLOT, STATISTICS, LOG; files in an intermediate step's workspace folder
become INTERMEDIATE; the run's logs folder always becomes LOG (kept for diagnosis even when the
run failed). Collecting a run twice records nothing new.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ccat_assets.contract import SIDECAR_SUFFIX, RunLayout, product_type_for
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


class CollectionError(RuntimeError):
    """The outputs break the contract (e.g. a final step with no SCIENCE product)."""


@dataclass
class FoundFile:
    path: Path
    relative_path: str
    product_type: DataProductType


@dataclass
class CollectResult:
    products: list[DataProduct] = field(default_factory=list)
    new: int = 0
    warnings: list[str] = field(default_factory=list)


def _inside(path: Path, root: Path) -> bool:
    resolved = path.resolve()
    return resolved == root or root in resolved.parents


def discover(layout: RunLayout, is_final: bool, *, logs_only: bool = False) -> tuple[
    list[FoundFile], list[str]
]:
    """The product files of a run and any warnings (rejected symlinks)."""
    found: list[FoundFile] = []
    warnings: list[str] = []
    root = layout.root.resolve()

    def walk(base: Path, classify) -> None:
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                rel = path.relative_to(layout.root).as_posix()
                if name.endswith(SIDECAR_SUFFIX) or name.startswith("."):
                    continue
                if path.is_symlink() and not _inside(path, root):
                    warnings.append(f"{rel}: symlink pointing outside the run directory, rejected")
                    continue
                if not path.is_file():
                    continue
                product_type = classify(path)
                if product_type is not None:
                    found.append(FoundFile(path, rel, product_type))

    if not logs_only:
        if is_final:
            walk(layout.output_dir, lambda p: product_type_for(
                PurePosixPath(p.relative_to(layout.output_dir).as_posix())))
        else:
            walk(layout.workspace_dir, lambda p: DataProductType.INTERMEDIATE)
    walk(layout.logs_dir, lambda p: DataProductType.LOG)
    return found, warnings


def read_sidecar(path: Path) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """(metadata, quality_metrics, warning) from ``<file>.meta.json`` if present."""
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if not sidecar.exists():
        return {}, {}, None
    try:
        data = json.loads(sidecar.read_text())
        if not isinstance(data, dict):
            raise ValueError("top level is not an object")
        metadata = data.get("metadata", {})
        metrics = data.get("quality_metrics", {})
        if not isinstance(metadata, dict) or not isinstance(metrics, dict):
            raise ValueError("'metadata' and 'quality_metrics' must be objects")
        json.dumps(metadata, allow_nan=False)
        json.dumps(metrics, allow_nan=False)
        return metadata, metrics, None
    except (ValueError, UnicodeDecodeError) as exc:
        return {}, {}, f"malformed sidecar {sidecar.name}: {exc}"


def _format(path: Path) -> str | None:
    suffixes = [s.lstrip(".").lower() for s in path.suffixes]
    if not suffixes:
        return None
    if suffixes[-1] in ("gz", "bz2", "xz") and len(suffixes) > 1:
        return ".".join(suffixes[-2:])
    return suffixes[-1]


def collect_run(
    session: Session,
    run: ExecutedReductionStep,
    layout: RunLayout,
    *,
    is_final: bool,
    processing_location_id: int,
    logs_only: bool = False,
) -> CollectResult:
    """Record the run's products, physical copies and lineage (idempotent)."""
    found, warnings = discover(layout, is_final, logs_only=logs_only)
    result = CollectResult(warnings=list(warnings))
    existing = {p.relative_path: p for p in session.scalars(
        sa.select(DataProduct).filter_by(executed_reduction_step_id=run.id))}
    raw_ids = _lineage_raw_ids(session, run.id)
    for item in found:
        product = existing.get(item.relative_path)
        if product is None:
            metadata, metrics, warning = read_sidecar(item.path)
            product = DataProduct(
                executed_reduction_step_id=run.id,
                name=item.path.name,
                relative_path=item.relative_path,
                data_product_type=item.product_type,
                format=_format(item.path),
                size_bytes=item.path.stat().st_size,
                checksum=file_checksum(item.path),
                meta=metadata,
                quality_metrics=metrics,
                warnings=[warning] if warning else [],
            )
            if warning:
                result.warnings.append(f"{item.relative_path}: {warning}")
            session.add(product)
            session.flush()
            session.add(PhysicalCopy(
                data_product_id=product.id, data_location_id=processing_location_id,
                status=PhysicalCopyStatus.PRESENT, path=str(item.path),
                checksum=product.checksum,
            ))
            if raw_ids:
                session.execute(sa.insert(data_product_lineage), [
                    {"data_product_id": product.id, "raw_data_package_id": rid}
                    for rid in sorted(raw_ids)
                ])
            result.new += 1
        result.products.append(product)
    if is_final and not logs_only and not any(
        p.data_product_type == DataProductType.SCIENCE for p in result.products
    ):
        raise CollectionError(
            "final step wrote no SCIENCE product (expected files under output/science/)"
        )
    return result


def _lineage_raw_ids(session: Session, run_id: int) -> set[int]:
    """Every raw package the run descends from: its own raw inputs and its input products'."""
    direct = set(session.scalars(
        sa.select(run_input_raw_data_package.c.raw_data_package_id)
        .where(run_input_raw_data_package.c.executed_reduction_step_id == run_id)))
    inherited = set(session.scalars(
        sa.select(data_product_lineage.c.raw_data_package_id)
        .join(run_input_data_product,
              run_input_data_product.c.data_product_id == data_product_lineage.c.data_product_id)
        .where(run_input_data_product.c.executed_reduction_step_id == run_id)))
    return direct | inherited
