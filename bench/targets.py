"""The shape every benchmark uses for its targets and key figures in its JSON.

``bench/report.py`` reads only these two lists, so a benchmark's own layout can change freely:
``targets`` is ``[{name, target, value, holds}]`` (``holds`` is None when the value was not
measured) and ``figures`` is ``[{name, value, unit}]``.
"""

from __future__ import annotations

from typing import Any

NO_TARGET = "no target recorded"


def at_most(name: str, value: float | None, limit: float) -> dict[str, Any]:
    return {"name": name, "target": f"<= {limit:g}", "value": value,
            "holds": None if value is None else value <= limit}


def at_least(name: str, value: float | None, limit: float) -> dict[str, Any]:
    return {"name": name, "target": f">= {limit:g}", "value": value,
            "holds": None if value is None else value >= limit}


def figure(name: str, value: Any, unit: str = "") -> dict[str, Any]:
    return {"name": name, "value": value, "unit": unit}
