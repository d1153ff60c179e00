"""``ccat-wm gaps PIPELINE``: what the gap sensor would launch now, and why the rest waits.

It reads the ops-db only: runs already queued in Dagster but not yet started are not seen
(the sensor counts them as in flight).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import click

from ccat_assets.cli.common import echo_json, opsdb_session
from ccat_assets.gaps import Decision, Reason, evaluate
from ccat_assets.gapstate.load import UnknownPipeline, load_pipeline_state
from ccat_assets.grouping import GroupingError
from ccat_assets.opsdb.types import utcnow


def decision_row(decision: Decision) -> dict[str, Any]:
    details = {k: v for k, v in decision.details.items() if v not in (None, [], {})}
    if decision.gap and decision.gap != decision.reason:
        details = {"gap": decision.gap.value, **details}
    return {"step": decision.step, "key": decision.key,
            "decision": "fire" if decision.fire else "wait", "reason": decision.reason.value,
            "fingerprint": decision.fingerprint, "details": details}


def _details_text(details: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in details.items())


@click.command()
@click.argument("pipeline")
@click.option("--json", "as_json", is_flag=True, help="Every decision as JSON.")
@click.option("--all", "show_all", is_flag=True, help="Also list the up-to-date sub-groups.")
def gaps(pipeline: str, as_json: bool, show_all: bool) -> None:
    """Show, step by step, which sub-groups of PIPELINE would run now and why others wait."""
    with opsdb_session() as session:
        try:
            state = load_pipeline_state(session, pipeline)
        except (UnknownPipeline, GroupingError) as exc:
            raise click.ClickException(str(exc)) from exc
    decisions = evaluate(state, utcnow())
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
