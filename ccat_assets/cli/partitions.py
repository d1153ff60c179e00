"""``ccat-wm partitions sync``: register current sub-groups as Dagster dynamic partitions.

MANUAL pipelines have no sensor adding keys; a materialize or backfill of a key needs it to
exist first (``dagster asset materialize --partition`` refuses unknown keys).
"""

from __future__ import annotations

import click
import dagster as dg
import sqlalchemy as sa

from ccat_assets.catalog import load_catalog
from ccat_assets.cli.common import opsdb_session
from ccat_assets.grouping import resolve_subgroups
from ccat_assets.opsdb import DataGrouping

ADD_BATCH = 1000


def sync_partitions(instance: dg.DagsterInstance, pipeline_names: list[str] | None = None
                    ) -> dict[str, int]:
    """Add every missing sub-group key of every partitioned grain; returns keys added per set."""
    added: dict[str, int] = {}
    with opsdb_session() as session:
        for pipeline in load_catalog(session):
            if pipeline_names and pipeline.name not in pipeline_names:
                continue
            grouping = session.scalar(sa.select(DataGrouping).filter_by(name=pipeline.grouping))
            done: set[str] = set()
            for step in pipeline.steps:
                if not step.partitioned or step.partitions_name in done:
                    continue
                done.add(step.partitions_name)
                keys = [sg.key for sg in resolve_subgroups(
                    session, filter_rules=grouping.filter_rules, group_by=list(step.group_by),
                    instrument_module_id=grouping.instrument_module_id)]
                existing = set(instance.get_dynamic_partitions(step.partitions_name))
                new = [k for k in keys if k not in existing]
                for i in range(0, len(new), ADD_BATCH):
                    instance.add_dynamic_partitions(step.partitions_name, new[i:i + ADD_BATCH])
                added[step.partitions_name] = len(new)
    return added


@click.group()
def partitions() -> None:
    """Dagster dynamic partitions of the pipelines' sub-groups."""


@partitions.command()
@click.argument("pipeline_names", nargs=-1)
def sync(pipeline_names: tuple[str, ...]) -> None:
    """Add the current sub-groups of PIPELINE_NAMES (default all) as partitions."""
    instance = dg.DagsterInstance.get()
    for name, count in sync_partitions(instance, list(pipeline_names) or None).items():
        click.echo(f"{name}: {count} new partition(s)")
