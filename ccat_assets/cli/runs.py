"""``ccat-wm runs`` lists runs; ``ccat-wm runs reconcile`` repairs the ones left in flight.

``reconcile`` is the pass of ``ccat_reconcile_sensor`` (``sensors/reconcile.py``), by hand: it
asks the Dagster instance of ``DAGSTER_HOME`` (the daemon's) which runs are still live, so it
refuses to run without it rather than judge every run unknown.
"""

from __future__ import annotations

import os

import click

from ccat_assets.cli.common import echo_json, opsdb_session
from ccat_assets.opsdb import RunStatus
from ccat_assets.opsdb.migrate import SchemaNotCurrent, require_current
from ccat_assets.opsdb.session import get_engine
from ccat_assets.results.provenance import UnknownName, list_runs

JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for tools.")


@click.group(invoke_without_command=True)
@click.option("--pipeline", "-p", help="Only runs of this pipeline.")
@click.option("--step", "-s", help="Only runs of this step.")
@click.option("--status", type=click.Choice([m.value for m in RunStatus], case_sensitive=False),
              help="Only runs in this status.")
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True,
              help="At most this many rows, newest first.")
@JSON
@click.pass_context
def runs(ctx: click.Context, pipeline: str | None, step: str | None, status: str | None,
         limit: int, as_json: bool) -> None:
    """List runs (ExecutedReductionSteps) with their status, software and products."""
    if ctx.invoked_subcommand is not None:
        return
    with opsdb_session() as session:
        try:
            rows = list_runs(session, pipeline=pipeline, step=step, limit=limit,
                             status=RunStatus(status.upper()) if status else None)
        except UnknownName as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no runs match")
        return
    for r in rows:
        tail = f"  {r['error_message']}" if r["error_message"] else ""
        click.echo(f"{r['id']:>7} {r['status']:18} {r['pipeline']}/{r['step']} "
                   f"{r['sub_group_key']}  {r['software']}  {r['products']} product(s)"
                   f"  {r['finished_at'] or '-'}{tail}")


@runs.command()
@click.option("--dry-run", is_flag=True, help="Show what would be repaired; change nothing.")
@JSON
def reconcile(dry_run: bool, as_json: bool) -> None:
    """End the runs left in flight with no live Dagster run behind them, cancel their jobs,
    and print each one (the reconciliation sensor's pass)."""
    import dagster as dg  # only here: the other commands start without Dagster

    from sensors.reconcile import reconcile as reconcile_pass
    from sensors.reconcile import summary

    if not os.environ.get("DAGSTER_HOME"):
        raise click.ClickException(
            "DAGSTER_HOME is not set: reconciliation asks the daemon's Dagster instance "
            "which runs are live")
    try:
        require_current(get_engine())
    except SchemaNotCurrent as exc:
        raise click.ClickException(str(exc)) from exc
    lines: list[str] = []
    with dg.DagsterInstance.get() as instance:
        repairs = reconcile_pass(instance, dry_run=dry_run, log=lines.append)
    if as_json:
        echo_json([{"run_id": r.row_id, "old_status": r.old_status.value, "reason": r.reason,
                    "hpc_job_id": r.hpc_job_id, "cancel_job": r.cancel_job} for r in repairs])
        return
    for line in lines:
        click.echo(line)
    click.echo(summary(repairs, dry_run=dry_run))
