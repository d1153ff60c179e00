"""Which cron expressions a spec may hold: exactly those Dagster's schedules accept.

A CRON pipeline's expression becomes the ``cron_schedule`` of Dagster schedules, which refuse
at load what Dagster does not accept; croniter alone accepts more (a sixth, seconds field;
``0 0 30 2 *``). Checking with croniter only let such a spec through ``ccat-wm apply`` and then
the code location failed to load. A step's ``schedule`` follows the same rule, so one kind of
cron expression is valid everywhere in a spec.
"""

from __future__ import annotations

from croniter import croniter

try:  # Dagster's own check, the one ScheduleDefinition applies
    from dagster._utils.schedules import is_valid_cron_string as _dagster_accepts
except ImportError:  # pragma: no cover - a Dagster that moved it: keep its documented rule
    def _dagster_accepts(cron_string: str) -> bool:
        return croniter.is_valid(cron_string) and len(croniter.expand(cron_string)[0]) == 5

EXAMPLE = "'0 3 * * *'"


def cron_problem(expression: str) -> str | None:
    """Why ``expression`` is not a cron expression Dagster schedules accept, or None."""
    if not croniter.is_valid(expression):
        return f"{expression!r} is not a valid cron expression (5 fields, e.g. {EXAMPLE})"
    if _dagster_accepts(expression):
        return None
    fields = len(expression.split())
    if fields != 5 and not expression.startswith("@"):
        return (f"{expression!r} has {fields} fields; Dagster schedules take standard cron "
                f"expressions of 5 fields (minute hour day-of-month month day-of-week, e.g. "
                f"{EXAMPLE}), with no seconds or years field")
    return (f"{expression!r} is not a cron expression Dagster schedules accept (such as a day "
            f"that never comes, 30 or 31 February); e.g. {EXAMPLE}")
