"""``ccat-wm``: define pipelines, register observations, inspect products and provenance.

Each command group lives in its own module; this one only assembles them.
"""

from __future__ import annotations

import click

from ccat_assets.cli.check import check
from ccat_assets.cli.db import db
from ccat_assets.cli.gaps import gaps
from ccat_assets.cli.grouping import grouping
from ccat_assets.cli.partitions import partitions
from ccat_assets.cli.products import lineage, products
from ccat_assets.cli.runs import runs
from ccat_assets.cli.specs import apply, ingest, pipelines, validate
from ccat_assets.cli.workspace import workspace


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """CCAT Workflow Manager: declarative reduction pipelines on Dagster."""


for command in (db, validate, apply, ingest, pipelines, grouping, partitions, gaps):
    cli.add_command(command)
for command in (products, runs, lineage, workspace, check):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="ccat-wm")
