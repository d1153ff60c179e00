"""A pipeline Dagster refused: why, which spec field it most likely comes from, and the
placeholder asset that shows it in the Dagster UI.

A refused pipeline is left out of the code location so the others still load; without a trace
in the UI its assets and sensor would just be gone, which reads like a deletion. The placeholder
is an external asset (nothing to materialize) in the pipeline's own asset group, whose
description carries the reason.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass

import dagster as dg

from ccat_assets.dagster_face.catalog import PipelineDef

STATUS_TAG = "ccat/status"
NOT_LOADED = "not_loaded"
MAX_REASON = 2000
_QUOTED = re.compile(r"""["']([^"']+)["']""")
_INVALID_NAME = re.compile(r"[^A-Za-z0-9_]")
#: A refusal about a cron expression (a word of its own: not ``chai_cron`` in an op name).
_ABOUT_CRON = re.compile(r"\bcron\b", re.IGNORECASE)
#: A refusal about a name (invalid, duplicate), as opposed to one that merely quotes one.
_ABOUT_NAMES = re.compile(r"\bname\b|duplicate", re.IGNORECASE)
#: Dagster's rule for job, op, sensor, schedule and asset group names.
_VALID_NAME = re.compile(r"^[A-Za-z0-9_]+$")

log = logging.getLogger("ccat_assets.definitions")


@dataclass(frozen=True)
class NotLoaded:
    """A pipeline left out of the code location.

    ``field`` is the position in the pipeline's spec the refusal comes from when it is known
    (``trigger.cron``, ``steps[grid].name``, ``name``), else None.
    """

    pipeline: str
    reason: str
    field: str | None = None


def describe(exc: BaseException) -> str:
    """The exception as one short text for a table cell, a log line and a UI description."""
    text = " ".join(str(exc).split()) or "(no message)"
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= MAX_REASON else text[:MAX_REASON - 3] + "..."


def refused(pipeline: PipelineDef, exc: BaseException) -> NotLoaded:
    """``pipeline`` refused by Dagster with ``exc``, mapped to the spec field it most likely
    comes from: the cron of its schedules; a pipeline or step name that breaks Dagster's name
    rule; else, for a refusal about a name, the grouping, step or pipeline whose name Dagster
    quotes; else no field (the reason still says what Dagster refused)."""
    message = str(exc)
    reason = describe(exc)
    if pipeline.cron and _ABOUT_CRON.search(message):
        return NotLoaded(pipeline.name, reason, "trigger.cron")
    if not _VALID_NAME.match(pipeline.name):
        return NotLoaded(pipeline.name, reason, "name")
    for step in pipeline.steps:
        if not _VALID_NAME.match(step.name):
            return NotLoaded(pipeline.name, reason, f"steps[{step.name}].name")
    if not _ABOUT_NAMES.search(message):
        return NotLoaded(pipeline.name, reason)
    quoted = _QUOTED.findall(message)
    if any(pipeline.grouping in q for q in quoted):
        return NotLoaded(pipeline.name, reason, "grouping")
    parts = [q.split("__") for q in quoted]
    for step in sorted(pipeline.steps, key=lambda s: -len(s.name)):
        if any(step.name in p for p in parts):
            return NotLoaded(pipeline.name, reason, f"steps[{step.name}].name")
    if any(pipeline.name in p for p in parts):
        return NotLoaded(pipeline.name, reason, "name")
    return NotLoaded(pipeline.name, reason)


def safe_name(pipeline: str) -> str:
    """A Dagster-valid name for ``pipeline`` (its own name when valid; else the valid
    characters and a hash, so two invalid names never meet)."""
    cleaned = _INVALID_NAME.sub("_", pipeline)
    if cleaned == pipeline and cleaned:
        return cleaned
    digest = hashlib.sha256(pipeline.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{cleaned}_{digest}".lstrip("_") or f"pipeline_{digest}"


def placeholder_asset(item: NotLoaded) -> dg.AssetSpec:
    """``ccat/<pipeline>/not_loaded`` in the pipeline's group, tagged ``ccat/status``."""
    name = safe_name(item.pipeline)
    where = f" (spec field `{item.field}`)" if item.field else ""
    return dg.AssetSpec(
        key=dg.AssetKey(["ccat", name, NOT_LOADED]),
        group_name=name,
        description=(
            f"**Pipeline `{item.pipeline}` is not loaded.** Dagster refused its definitions"
            f"{where}, so its assets, jobs, sensors and schedules are left out of this code "
            "location; every other pipeline loaded.\n\n"
            f"Reason: {item.reason}\n\n"
            "Fix the spec (`ccat-wm validate` names the field), `ccat-wm apply` it, and the "
            "location reloads. `ccat-wm pipelines` lists every pipeline's status."),
        metadata={"ccat/pipeline": item.pipeline, "reason": item.reason,
                  "spec field": item.field or ""},
        tags={STATUS_TAG: NOT_LOADED},
    )


def log_not_loaded(item: NotLoaded) -> None:
    """One error line per refused pipeline in the code server's log."""
    where = f" [{item.field}]" if item.field else ""
    log.error("pipeline %s is not loaded%s: %s", item.pipeline, where, item.reason)
