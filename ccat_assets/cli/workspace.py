"""``ccat-wm workspace gc / status``: the storage lifecycle of intermediates, by hand.

``gc`` is the workspace janitor's pass (see ``sensors/workspace_janitor.py``): it refreshes
which intermediates nothing will read again and frees the oldest of them when the disk is
under pressure; ``--all`` frees every one of them regardless, ``--dry-run`` changes nothing.
"""

from __future__ import annotations

import click
import sqlalchemy as sa

from ccat_assets.cli.common import echo_json, opsdb_session
from ccat_assets.opsdb import DataProduct, DataProductType, PhysicalCopy
from ccat_assets.opsdb.migrate import SchemaNotCurrent, require_current
from ccat_assets.opsdb.session import get_engine, session_factory
from ccat_assets.results.storage_lifecycle import (
    GB,
    LocationNotFound,
    Thresholds,
    disk_usage,
    processing_location,
    run_gc,
)
from ccat_assets.settings import get_settings


def _require_current_schema() -> None:
    try:
        require_current(get_engine())
    except SchemaNotCurrent as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def workspace() -> None:
    """Intermediate products at this instance's processing location."""


@workspace.command()
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option("--all", "everything", is_flag=True,
              help="Free every deletable intermediate, whatever the free space.")
@click.option("--json", "as_json", is_flag=True)
def gc(dry_run: bool, everything: bool, as_json: bool) -> None:
    """Free intermediates nothing will read again, oldest first, under disk pressure."""
    settings = get_settings()
    _require_current_schema()
    try:
        report = run_gc(
            session_factory(settings.database_url),
            location_setting=settings.processing_location_id,
            workspace=settings.pipelines_dir,
            thresholds=Thresholds(settings.workspace_gc_min_free_gb,
                                  settings.workspace_gc_min_free_percent),
            dry_run=dry_run, everything=everything,
            max_deletions=None if everything else settings.workspace_gc_max_deletions)
    except LocationNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        echo_json(report.to_json())
        return
    for copy in report.deleted:
        click.echo(f"{'would delete' if dry_run else 'deleted'} {copy.path} "
                   f"({copy.size_bytes} B, product {copy.product_id})")
    for failure in report.failed:
        click.echo(f"failed: {failure}", err=True)
    click.echo(report.summary())


@workspace.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json: bool) -> None:
    """Free space and intermediate copies by lifecycle status."""
    settings = get_settings()
    with opsdb_session() as session:
        try:
            location = processing_location(session, settings.processing_location_id)
        except LocationNotFound as exc:
            raise click.ClickException(str(exc)) from exc
        rows = session.execute(
            sa.select(PhysicalCopy.status, sa.func.count(), sa.func.sum(DataProduct.size_bytes))
            .join(DataProduct, DataProduct.id == PhysicalCopy.data_product_id)
            .where(PhysicalCopy.data_location_id == location.id,
                   DataProduct.data_product_type == DataProductType.INTERMEDIATE)
            .group_by(PhysicalCopy.status).order_by(PhysicalCopy.status)).all()
    usage = disk_usage(settings.pipelines_dir)
    thresholds = Thresholds(settings.workspace_gc_min_free_gb,
                            settings.workspace_gc_min_free_percent)
    doc = {"location": location.name, "workspace": str(settings.pipelines_dir),
           "total": usage.total, "free": usage.free,
           "free_percent": round(usage.free_percent, 2),
           "bytes_needed": thresholds.bytes_needed(usage),
           "intermediates": {str(s): {"copies": n, "bytes": int(b or 0)} for s, n, b in rows}}
    if as_json:
        echo_json(doc)
        return
    click.echo(f"{location.name}: {usage.free / GB:.1f} GB free of {usage.total / GB:.1f} GB "
               f"({usage.free_percent:.1f}%); thresholds {thresholds.min_free_gb:g} GB / "
               f"{thresholds.min_free_percent:g}%")
    for name, v in doc["intermediates"].items():
        click.echo(f"  {name:22} {v['copies']:>8} copies {v['bytes'] / GB:>10.3f} GB")
