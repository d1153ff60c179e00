"""``ccat-wm check [PIPELINE]``: does Dagster agree with the ops-db? The first thing to run
after an incident.

It lists every disagreement the rules of :mod:`ccat_assets.consistency.rules` find between the
Dagster instance of ``DAGSTER_HOME`` and the ops-db, each with what to do. Exit status 0 when
they agree, 1 when they do not.
"""

from __future__ import annotations

import os

import click

from ccat_assets.cli.common import echo_json, opsdb_session


@click.command()
@click.argument("pipelines", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="The disagreements as JSON.")
def check(pipelines: tuple[str, ...], as_json: bool) -> None:
    """Compare Dagster with the ops-db for PIPELINES (default all): partitions,
    materializations and data versions against COMPLETED runs and fingerprints, runs in
    flight against live Dagster runs, queued runs against PENDING rows. Exit 1 on any
    disagreement."""
    if not os.environ.get("DAGSTER_HOME"):
        raise click.ClickException(
            "DAGSTER_HOME is not set: the check compares the ops-db with the daemon's Dagster "
            "instance")
    import dagster as dg  # only here: the other commands start without Dagster

    from ccat_assets.consistency.rules import summary
    from ccat_assets.consistency.snapshot import UnknownPipelines, check_pipelines

    with dg.DagsterInstance.get() as instance, opsdb_session() as session:
        try:
            findings = check_pipelines(instance, session, pipelines)
        except UnknownPipelines as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        echo_json([f.as_dict() for f in findings])
    else:
        for f in findings:
            where = f"{f.pipeline}/{f.step}" + (f" {f.key}" if f.key else "")
            click.echo(f"{f.kind:34} {where}: {f.detail}\n{'':34} -> {f.remedy}")
        click.echo(summary(findings))
    raise SystemExit(1 if findings else 0)
