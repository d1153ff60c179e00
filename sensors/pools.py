"""``max_concurrent_runs`` of a step as a Dagster concurrency pool limit.

Each step with a limit has the pool ``StepDef.pool`` (the factory puts its asset in it); the
limit itself lives on the instance. Gap sensors call :func:`ensure_pools` on their first tick
and whenever the limits change; ``ccat-wm apply`` can call it right after writing specs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import dagster as dg

from ccat_assets.dagster_face.catalog import PipelineDef
from ccat_assets.hashing import content_hash


def pool_limits(pipelines: Iterable[PipelineDef]) -> dict[str, int]:
    """Pool name -> limit for every step that has ``max_concurrent_runs``.

    A batched step's pool holds one run at a time, and that run executes at most
    ``max_concurrent_runs`` of its members at once (the array's throttle): so the step
    never has more jobs running than its limit, batched or not.
    """
    return {step.pool: 1 if step.partitioned and step.batch_size > 1
            else step.max_concurrent_runs
            for p in pipelines for step in p.steps if step.max_concurrent_runs}


def limits_token(pipelines: Iterable[PipelineDef]) -> str:
    """A short hash of the limits, so a sensor rewrites them only when they changed."""
    return content_hash(sorted(pool_limits(pipelines).items()))[7:23]


def ensure_pools(instance: dg.DagsterInstance, pipelines: Iterable[PipelineDef]) -> dict[str, int]:
    """Set every step pool's limit on ``instance``; returns the limits that were changed.

    Storage that cannot hold pool limits (an old SQLite instance without the table) is left
    alone: runs then simply are not limited, which the returned empty dict makes visible.
    """
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return {}
    changed = {}
    for pool, limit in pool_limits(pipelines).items():
        if storage.get_concurrency_info(pool).slot_count != limit:
            storage.set_concurrency_slots(pool, limit)
            changed[pool] = limit
    return changed


def set_pool_limits(pipelines: Iterable[PipelineDef]) -> str:
    """For ``ccat-wm apply``: set the limits on the DAGSTER_HOME instance; say what happened."""
    home = os.environ.get("DAGSTER_HOME")
    later = "the gap sensors set the pool limits on their next tick"
    if not home:
        return f"DAGSTER_HOME is not set: {later}"
    if not Path(home).is_dir():
        return f"warning: DAGSTER_HOME={home} is not a folder: {later}"
    try:
        with dg.DagsterInstance.get() as instance:
            changed = ensure_pools(instance, pipelines)
    except Exception as exc:  # noqa: BLE001 - the apply is committed; this is advice only
        return f"warning: could not set pool limits on the DAGSTER_HOME instance ({exc}): {later}"
    if not changed:
        return "pool limits unchanged"
    return "pool limits set: " + ", ".join(f"{pool}={n}" for pool, n in sorted(changed.items()))
