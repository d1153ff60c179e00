"""The metadata of a step's materialization: what a person reads on its page in the UI.

One function for every way a partition is reported (a single run, a batch member, a completed
run reported again), so they all look alike: the products, the raw packages and upstream
products it consumed (bounded tables; ``ccat-wm lineage`` has the full lists), previews of its
PLOT products (:mod:`ccat_assets.results.thumbnails`), the software with its image digest when the
spec declares one, and the run's figures (the exit code an integer, measurements floats).
The data version is the input fingerprint, as gap evaluation and ``ccat-wm check`` expect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from ccat_assets.execution.execute import RunOutcome
from ccat_assets.results.thumbnails import MAX_THUMBNAILS, thumbnail

#: Metrics that are counts or codes, not measurements.
INTEGER_METRICS = frozenset({"exit_code"})


def materialize_result(outcome: RunOutcome) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=outcome_metadata(outcome),
                                data_version=dg.DataVersion(outcome.fingerprint))


def outcome_metadata(outcome: RunOutcome) -> dict[str, Any]:
    by_type: dict[str, int] = {}
    for p in outcome.products:
        by_type[p["type"]] = by_type.get(p["type"], 0) + 1
    metadata: dict[str, Any] = {
        "sub_group": outcome.sub_group_key,
        "dimensions": dg.MetadataValue.json(outcome.dimensions),
        "raw_packages": dg.MetadataValue.int(outcome.n_raw_packages),
        "raw_inputs": _raw_table(outcome),
        "upstream_products": dg.MetadataValue.int(outcome.n_upstream),
        **({"upstream_inputs": _upstream_table(outcome)} if outcome.n_upstream else {}),
        "products": _products_table(outcome),
        "products_by_type": dg.MetadataValue.json(by_type),
        "total_bytes": dg.MetadataValue.int(sum(p["size_bytes"] for p in outcome.products)),
        **_quicklooks(outcome),
        "software": f"{outcome.software['name']} {outcome.software['version']}",
        "image": outcome.software["image"],
        **({"image_digest": outcome.software["digest"]} if outcome.software["digest"] else {}),
        "ops-db run id": dg.MetadataValue.int(outcome.run_id),
        "ops-db product ids": dg.MetadataValue.json([p["id"] for p in outcome.products]),
        "run_dir": dg.MetadataValue.path(outcome.run_dir),
        "backend": outcome.backend,
        "job_id": outcome.job_id or "",
        "container_runtime": outcome.runtime,
        "reattached": outcome.reattached,
        "input_fingerprint": outcome.fingerprint,
        "dagster_run_id": outcome.dagster_run_id or "",
    }
    if outcome.reused:
        metadata["reused_run"] = dg.MetadataValue.md(
            f"Nothing ran: ops-db run {outcome.run_id} (Dagster run "
            f"`{outcome.dagster_run_id or '-'}`) already COMPLETED these exact inputs. "
            "Launch with the tag `ccat/force=true` to run it again.")
    for name, value in outcome.metrics.items():
        if value is None:
            continue
        metadata[name] = (dg.MetadataValue.int(int(value)) if name in INTEGER_METRICS
                          else dg.MetadataValue.float(float(value)))
    if outcome.warnings:
        metadata["warnings"] = dg.MetadataValue.md(
            "\n".join(f"- {w}" for w in outcome.warnings))
    return metadata


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        records=[dg.TableRecord({name: row[name] for name, _ in columns}) for row in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns]))


def _products_table(outcome: RunOutcome) -> dg.TableMetadataValue:
    """By path, so a run reported again shows the table it showed first."""
    return _table(sorted(outcome.products, key=lambda p: p["path"]),
                  [("path", "string"), ("type", "string"), ("size_bytes", "int"),
                   ("checksum", "string")])


def _more(shown: int, total: int, outcome: RunOutcome) -> str | None:
    """The closing row's text when a table lists fewer rows than there are."""
    if total <= shown:
        return None
    where = (f"ccat-wm lineage {outcome.products[0]['id']}" if outcome.products
             else f"ops-db run {outcome.run_id}")
    return f"... and {total - shown} more ({where} lists them all)"


def _raw_table(outcome: RunOutcome) -> dg.TableMetadataValue:
    rows = list(outcome.raw_packages)
    more = _more(len(rows), outcome.n_raw_packages, outcome)
    if more:
        rows.append({"name": more, "checksum": "", "archived_at": ""})
    return _table(rows, [("name", "string"), ("checksum", "string"),
                         ("archived_at", "string")])


def _upstream_table(outcome: RunOutcome) -> dg.TableMetadataValue:
    rows = list(outcome.upstream)
    more = _more(len(rows), outcome.n_upstream, outcome)
    if more:
        rows.append({"step": more, "sub_group": "", "product": "", "product_id": 0,
                     "run_id": 0, "dagster_run_id": ""})
    return _table(rows, [("step", "string"), ("sub_group", "string"), ("product", "string"),
                         ("product_id", "int"), ("run_id", "int"),
                         ("dagster_run_id", "string")])


def _quicklooks(outcome: RunOutcome) -> dict[str, Any]:
    """A preview per PLOT product, the first :data:`MAX_THUMBNAILS` of them."""
    plots = sorted((p for p in outcome.products if p["type"] == "PLOT"),
                   key=lambda p: p["path"])
    entries: dict[str, Any] = {}
    for plot in plots[:MAX_THUMBNAILS]:
        shown = thumbnail(Path(outcome.run_dir, plot["path"]), Path(plot["path"]).name)
        entries[f"quicklook {plot['path']}"] = dg.MetadataValue.md(shown.markdown)
    if len(plots) > MAX_THUMBNAILS:
        entries["quicklooks_not_shown"] = dg.MetadataValue.md(
            f"{len(plots) - MAX_THUMBNAILS} more PLOT products have no preview here (at most "
            f"{MAX_THUMBNAILS} per materialization); see `products`.")
    return entries
