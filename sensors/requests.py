"""Fired gap decisions as Dagster RunRequests.

The run key is ``step:sub_group_key:fingerprint``: Dagster launches one run per key, so a
pair is never launched twice for the same inputs, and new inputs make a new key. A retry of a
failed fingerprint needs a key of its own, so attempts after the first end in ``:retryN``.
"""

from __future__ import annotations

import dagster as dg

from ccat_assets.catalog import PipelineDef
from ccat_assets.factory import step_key
from ccat_assets.gaps import Decision


def run_key(decision: Decision) -> str:
    key = f"{decision.step}:{decision.key}:{decision.fingerprint}"
    return f"{key}:retry{decision.attempt}" if decision.attempt else key


def run_request(pipeline: PipelineDef, decision: Decision) -> dg.RunRequest:
    step = pipeline.step(decision.step)
    return dg.RunRequest(
        run_key=run_key(decision),
        asset_selection=[step_key(pipeline.name, step.name)],
        partition_key=decision.key if step.partitioned else None,
        tags={
            "dagster/priority": str(pipeline.priority),
            "ccat/pipeline": pipeline.name,
            "ccat/step": step.name,
            "ccat/sub_group": decision.key,
            "ccat/reason": decision.reason.value,
        },
    )
