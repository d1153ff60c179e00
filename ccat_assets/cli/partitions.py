"""``ccat-wm partitions sync``: register current sub-groups as Dagster dynamic partitions.

The partitions sensor and the gap sensors do this when raw data arrives; this command does
it at once (after bulk changes, or with the daemon stopped).
"""

from __future__ import annotations

import click
import dagster as dg

from ccat_assets.cli.common import opsdb_session
from ccat_assets.dagster_face.catalog import load_catalog
from sensors.partitions import sync_partitions


@click.group()
def partitions() -> None:
    """Dagster dynamic partitions of the pipelines' sub-groups."""


@partitions.command()
@click.argument("pipeline_names", nargs=-1)
def sync(pipeline_names: tuple[str, ...]) -> None:
    """Add the current sub-groups of PIPELINE_NAMES (default all) as partitions."""
    instance = dg.DagsterInstance.get()
    with opsdb_session() as session:
        chosen = [p for p in load_catalog(session)
                  if not pipeline_names or p.name in pipeline_names]
        added = sync_partitions(instance, session, chosen)
    for name, count in added.items():
        click.echo(f"{name}: {count} new partition(s)")
