"""``ccat-wm grouping``: preview what a DataGrouping selects, and expand presets."""

from __future__ import annotations

import click
import sqlalchemy as sa
import yaml

from ccat_assets.cli.common import echo_json, opsdb_session
from ccat_assets.grouping import (
    GroupingError,
    expand_preset,
    format_preview_table,
    load_presets,
    preview_rows,
    validate_group_by,
)
from ccat_assets.opsdb import DataGrouping, GroupingPreset
from ccat_assets.specs.specfile import did_you_mean


@click.group()
def grouping() -> None:
    """Data groupings: previews and presets."""


@grouping.command()
@click.argument("name")
@click.option("--group-by", default="", help="Comma-separated dimensions, e.g. source,line.")
@click.option("--json", "as_json", is_flag=True)
def preview(name: str, group_by: str, as_json: bool) -> None:
    """Show the sub-groups grouping NAME selects now, without creating anything."""
    dims = [d.strip() for d in group_by.split(",") if d.strip()]
    problems = validate_group_by(dims, where="--group-by")
    if problems:
        raise click.UsageError("; ".join(problems))
    with opsdb_session() as session:
        row = session.scalar(sa.select(DataGrouping).filter_by(name=name))
        if row is None:
            names = session.scalars(sa.select(DataGrouping.name))
            raise click.ClickException(f"no grouping {name!r}{did_you_mean(name, names)}")
        try:
            rows = preview_rows(session, row, dims)
        except GroupingError as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        echo_json(rows)
    else:
        click.echo(format_preview_table(rows))


@grouping.command()
def presets() -> None:
    """List the grouping presets and their placeholders."""
    with opsdb_session() as session:
        load_presets(session)
        for preset in session.scalars(sa.select(GroupingPreset).order_by(GroupingPreset.name)):
            params = ", ".join(preset.parameters or [])
            click.echo(f"{preset.name:32} ({params}) {preset.description or ''}")


@grouping.command()
@click.argument("preset_name")
@click.option("--name", "grouping_name", required=True, help="Name of the new grouping.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE")
def expand(preset_name: str, grouping_name: str, params: tuple[str, ...]) -> None:
    """Print a grouping spec (YAML, for `ccat-wm apply`) expanded from PRESET_NAME."""
    values = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.UsageError(f"--param {item!r}: expected KEY=VALUE")
        values[key] = value
    with opsdb_session() as session:
        load_presets(session)
        preset = session.scalar(sa.select(GroupingPreset).filter_by(name=preset_name))
        if preset is None:
            names = session.scalars(sa.select(GroupingPreset.name))
            raise click.ClickException(
                f"no preset {preset_name!r}{did_you_mean(preset_name, names)}")
        try:
            spec = expand_preset(preset, values)
        except GroupingError as exc:
            raise click.ClickException(str(exc)) from exc
    spec["name"] = grouping_name
    group_by = spec.pop("group_by", None)
    if group_by is not None:
        click.echo(f"# suggested group_by for steps using this grouping: {list(group_by)}")
    click.echo(yaml.safe_dump({"groupings": [spec]}, sort_keys=False))
