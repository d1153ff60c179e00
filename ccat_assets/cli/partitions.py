"""``ccat-wm partitions sync``: register current sub-groups as Dagster dynamic partitions.

The partitions sensor and the gap sensors do this when raw data arrives; this command does
it at once (after bulk changes, or with the daemon stopped). Sub-groups a gap sensor retired
(fully reduced, ``docs/scale.md``) stay out unless named with ``--key`` or brought back all
at once with ``--retired``.
"""

from __future__ import annotations

import click
import dagster as dg

from ccat_assets.cli.common import opsdb_session
from ccat_assets.dagster_face.catalog import load_catalog
from ccat_assets.opsdb.retired import restore, restore_all, retired_keys
from sensors.partitions import subgroup_keys, sync_partitions


@click.group()
def partitions() -> None:
    """Dagster dynamic partitions of the pipelines' sub-groups."""


@partitions.command()
@click.argument("pipeline_names", nargs=-1)
@click.option("--key", "keys", multiple=True, metavar="SUB_GROUP",
              help="Bring back this retired sub-group (repeatable); it must be a current "
                   "sub-group of one of the pipelines.")
@click.option("--retired", "all_retired", is_flag=True,
              help="Bring back every retired sub-group of the pipelines.")
def sync(pipeline_names: tuple[str, ...], keys: tuple[str, ...], all_retired: bool) -> None:
    """Add the current sub-groups of PIPELINE_NAMES (default all) as partitions, except
    retired ones."""
    instance = dg.DagsterInstance.get()
    with opsdb_session() as session:
        catalog = load_catalog(session)
        unknown = sorted(set(pipeline_names) - {p.name for p in catalog})
        if unknown:
            raise click.BadParameter(f"no pipeline {', '.join(unknown)} in the ops-db",
                                     param_hint="PIPELINE_NAMES")
        chosen = [p for p in catalog if not pipeline_names or p.name in pipeline_names]
        current = subgroup_keys(session, chosen)
        missing = sorted(set(keys) - {k for found in current.values() for k in found})
        if missing:
            raise click.BadParameter(
                f"{', '.join(repr(k) for k in missing)} is no current sub-group of "
                f"{', '.join(p.name for p in chosen) or 'any pipeline'}", param_hint="--key")
        back: dict[str, set[str]] = {}
        for name, found in sorted(current.items()):
            if all_retired:
                back[name] = restore_all(session, name) & found
            elif keys:
                back[name] = set(keys) & found & retired_keys(session, [name])[name]
                restore(session, name, back[name])
        session.flush()
        added = sync_partitions(instance, session, chosen)
    for name, count in added.items():
        restored = f" ({len(back[name])} of them retired before)" if back.get(name) else ""
        click.echo(f"{name}: {count} new partition(s){restored}")
