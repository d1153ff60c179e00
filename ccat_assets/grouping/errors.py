"""The one error type of the grouping engine, and the near-miss hint used in its messages."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GroupingError(ValueError):
    """Bad filter rules, group_by or preset parameters: every problem, each with its position.

    Callers (spec validation, the CLI, the sensor) show ``errors`` as a list, so one bad
    grouping reports all its mistakes at once instead of one per attempt.
    """

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors: list[str] = list(errors)
        super().__init__("\n".join(self.errors) or "invalid grouping")


def did_you_mean(name: object, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for a near miss, else ``""``."""
    if not isinstance(name, str):
        return ""
    pool = list(candidates)
    close = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in pool}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
    return f"; did you mean {close[0]!r}?" if close else ""


def describe(value: object) -> str:
    """A short rendering of a bad value for a message: ``'abc'``, ``int 5``, ``dict {...}``."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return text if isinstance(value, str) else f"{type(value).__name__} {text}"
