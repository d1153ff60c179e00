"""``ccat-wm gaps PIPELINE``: what the gap sensor would launch now, and why the rest waits.

It reads the ops-db only. Queued Dagster runs are in it as PENDING rows once the queued-runs
sensor has seen them (within a sensor interval), so they count as in flight here as they do
for the sensor. ``--at`` evaluates the same rule at another time (the rule is a pure
function of the state and a clock).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import click

from ccat_assets.automation.gaps import Decision, Reason, evaluate
from ccat_assets.automation.gapstate.load import UnknownPipeline, load_pipeline_state
from ccat_assets.cli.common import echo_json, opsdb_session
from ccat_assets.grouping import GroupingError
from ccat_assets.opsdb.types import utcnow


def decision_row(decision: Decision) -> dict[str, Any]:
    details = {k: v for k, v in decision.details.items() if v not in (None, [], {})}
    if decision.gap and decision.gap != decision.reason:
        details = {"gap": decision.gap.value, **details}
    return {"step": decision.step, "key": decision.key,
            "decision": "fire" if decision.fire else "wait", "reason": decision.reason.value,
            "fingerprint": decision.fingerprint, "details": details,
            "wake_at": decision.wake_at.isoformat() if decision.wake_at else None}


def _parse_time(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time, e.g. "
                                 "2026-12-06T03:00:00Z", param_hint="--at") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _details_text(details: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in details.items())


@click.command()
@click.argument("pipeline")
@click.option("--json", "as_json", is_flag=True, help="Every decision as JSON.")
@click.option("--all", "show_all", is_flag=True, help="Also list the up-to-date sub-groups.")
@click.option("--at", "at", metavar="TIME", default=None,
              help="Evaluate at this ISO 8601 time (UTC unless it names a zone) instead of "
                   "now: what would fire then, with today's data and runs.")
def gaps(pipeline: str, as_json: bool, show_all: bool, at: str | None) -> None:
    """Show, step by step, which sub-groups of PIPELINE would run now (or ``--at`` TIME) and
    why others wait; a waiting pair's ``wake_at`` says when its cooldown or schedule lets it
    fire."""
    now = _parse_time(at) if at else utcnow()
    with opsdb_session() as session:
        try:
            state = load_pipeline_state(session, pipeline)
        except (UnknownPipeline, GroupingError) as exc:
            raise click.ClickException(str(exc)) from exc
    decisions = evaluate(state, now)
    if as_json:
        echo_json([decision_row(d) for d in decisions])
        return
    for step in state.steps:
        mine = [d for d in decisions if d.step == step.name]
        counts = Counter(d.reason.value for d in mine)
        fire = sum(d.fire for d in mine)
        tally = ", ".join(f"{n} {r}" for r, n in sorted(counts.items()))
        click.echo(f"{step.name} ({'+'.join(step.group_by) or 'all'}): {len(mine)} sub-group(s),"
                   f" {fire} would fire; {tally}")
        for d in mine:
            if d.reason == Reason.UP_TO_DATE and not show_all:
                continue
            row = decision_row(d)
            click.echo(f"  {row['decision']:4}  {row['reason']:19} {d.key}  "
                       f"{_details_text(row['details'])}".rstrip())
