"""``ccat-wm validate / apply / ingest / pipelines``: pipeline specs and observations."""

from __future__ import annotations

from pathlib import Path

import click
import sqlalchemy as sa

from ccat_assets.cli.common import echo_json, fail_with_problems, opsdb_session
from ccat_assets.cli.reload import reload_code_location
from ccat_assets.cli.status import load_status
from ccat_assets.codelocation.spec_dagster import validate_for_dagster
from ccat_assets.dagster_face.catalog import load_catalog_checked
from ccat_assets.opsdb import Pipeline
from ccat_assets.specs.apply import apply_spec_set, known_objects
from ccat_assets.specs.ingest import ingest as ingest_manifests
from ccat_assets.specs.ingest import read_manifests
from ccat_assets.specs.specfile import SpecError
from sensors.pools import set_pool_limits

FILES = click.argument("files", nargs=-1, required=True,
                       type=click.Path(path_type=Path, dir_okay=False))


@click.command()
@FILES
@click.option("--against-db", is_flag=True,
              help="Also accept references to software, groupings and locations in the ops-db.")
def validate(files: tuple[Path, ...], against_db: bool) -> None:
    """Check pipeline spec FILES; list every problem (exit 2) or say they are valid."""
    known, existing = None, []
    if against_db:
        with opsdb_session() as session:
            known = known_objects(session)
            existing, _ = load_catalog_checked(session)
    try:
        spec_set = validate_for_dagster(list(files), known, existing)
    except SpecError as exc:
        fail_with_problems(exc)
    click.echo(
        f"valid: {len(spec_set.pipelines)} pipeline(s), {len(spec_set.software)} software, "
        f"{len(spec_set.groupings)} grouping(s), {len(spec_set.locations)} location(s)"
    )


@click.command()
@FILES
@click.option("--reload/--no-reload", default=True, show_default=True,
              help="Ask a running Dagster webserver to reload the code location.")
def apply(files: tuple[Path, ...], reload: bool) -> None:
    """Validate and upsert pipeline spec FILES into the ops-db (idempotent)."""
    try:
        with opsdb_session() as session:
            existing, _ = load_catalog_checked(session)
            spec_set = validate_for_dagster(list(files), known_objects(session), existing)
            report = apply_spec_set(session, spec_set)
    except SpecError as exc:
        fail_with_problems(exc)
    for line in report.lines():
        click.echo(line)
    if not report.wrote_anything:
        click.echo("nothing changed: the ops-db already matches these specs")
        return
    if reload:
        click.echo(reload_code_location())
    with opsdb_session() as session:
        click.echo(set_pool_limits(load_catalog_checked(session)[0]))


@click.command()
@FILES
def ingest(files: tuple[Path, ...]) -> None:
    """Register RawDataPackages and their observations from manifest FILES."""
    try:
        manifest = read_manifests(list(files))
        with opsdb_session() as session:
            report = ingest_manifests(session, manifest)
    except SpecError as exc:
        fail_with_problems(exc)
    for line in report.lines():
        click.echo(line)


@click.command()
@click.option("--json", "as_json", is_flag=True)
def pipelines(as_json: bool) -> None:
    """List the pipelines in the ops-db, and whether the code location loads each.

    The status comes from building the code location the way Dagster loads it: ``loaded``,
    or ``not_loaded`` with the reason (the pipeline is left out; every other one loads).
    """
    with opsdb_session() as session:
        rows = [
            {"name": p.name, "trigger": p.trigger_type.value, "enabled": p.enabled,
             "priority": p.priority, "grouping": p.data_grouping.name,
             "steps": [s.name for s in p.steps]}
            for p in session.scalars(sa.select(Pipeline).order_by(Pipeline.name))
        ]
        catalog, unreadable = load_catalog_checked(session)
    status = load_status(catalog, unreadable)
    for row in rows:
        row.update(status.get(row["name"], {"status": "not_loaded", "reason": "unknown",
                                            "field": None}))
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        state = "enabled" if row["enabled"] else "disabled"
        click.echo(f"{row['name']:24} {row['status']:10} {row['trigger']:10} {state:8} "
                   f"prio {row['priority']:4} grouping {row['grouping']}: "
                   f"{' -> '.join(row['steps'])}")
        if row["reason"]:
            where = f" [{row['field']}]" if row["field"] else ""
            click.echo(f"    not loaded{where}: {row['reason']}")
