"""Which fired gaps go into which run: one run per gap, or batches of one step.

Pure, like :mod:`ccat_assets.automation.gaps`: the fired decisions and each step's ``batch_size``
in, the launches out, oldest gap first. ``limit`` counts runs, not gaps: a tick may launch
``limit`` batches of ``batch_size`` members each.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ccat_assets.automation.gaps import Decision, runs_to_request


def plan_launches(fired: Iterable[Decision], *, batch_sizes: Mapping[str, int], limit: int,
                  step_order: Sequence[str] = ()) -> list[list[Decision]]:
    """Each launch is one run: a single decision, or up to ``batch_sizes[step]`` of a step."""
    decisions = list(fired)
    launches: list[list[Decision]] = []
    filling: dict[str, list[Decision]] = {}
    for decision in runs_to_request(decisions, len(decisions), step_order):
        size = batch_sizes.get(decision.step, 1)
        current = filling.get(decision.step)
        if size > 1 and current is not None and len(current) < size:
            current.append(decision)
            continue
        if len(launches) >= limit:
            continue  # a later tick launches it
        launches.append([decision])
        if size > 1:
            filling[decision.step] = launches[-1]
    return launches
