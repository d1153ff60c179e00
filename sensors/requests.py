"""Fired gap decisions as Dagster RunRequests.

The run key is ``step:sub_group_key:fingerprint``: Dagster launches one run per key, so a
pair is never launched twice for the same inputs, and new inputs make a new key. A retry of a
failed fingerprint needs a key of its own, so attempts after the first end in ``:retryN``.
A batch (a step with ``batch_size`` > 1) is one run of the step's batch job; its key hashes
the keys its members would have had.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from ccat_assets.automation.gaps import Decision
from ccat_assets.dagster_face.batch_job import SUB_GROUPS, batch_job_name, batch_op_name
from ccat_assets.dagster_face.catalog import PipelineDef
from ccat_assets.dagster_face.factory import grain_job_name, step_key
from ccat_assets.hashing import content_hash


def batch_run_key(decisions: Sequence[Decision]) -> str:
    """One key per set of (sub-group, fingerprint, attempt): the same gaps never launch twice."""
    members = sorted(run_key(d) for d in decisions)
    return f"{decisions[0].step}:batch{len(members)}:{content_hash(members)[7:31]}"


def run_key(decision: Decision) -> str:
    key = f"{decision.step}:{decision.key}:{decision.fingerprint}"
    return f"{key}:retry{decision.attempt}" if decision.attempt else key


def run_request(pipeline: PipelineDef, decision: Decision) -> dg.RunRequest:
    step = pipeline.step(decision.step)
    return dg.RunRequest(
        run_key=run_key(decision),
        job_name=grain_job_name(pipeline, step),
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


def batch_run_request(pipeline: PipelineDef, decisions: Sequence[Decision]) -> dg.RunRequest:
    """A run of the step's batch job over the sub-groups of ``decisions`` (one step)."""
    step = pipeline.step(decisions[0].step)
    name = batch_job_name(pipeline.name, step.name)
    keys = [d.key for d in decisions]
    reasons = sorted({d.reason.value for d in decisions})
    return dg.RunRequest(
        run_key=batch_run_key(decisions),
        job_name=name,
        run_config={"ops": {batch_op_name(pipeline.name, step.name): {
            "config": {SUB_GROUPS: keys}}}},
        tags={
            "dagster/priority": str(pipeline.priority),
            "ccat/pipeline": pipeline.name,
            "ccat/step": step.name,
            "ccat/batch": "true",
            "ccat/batch_size": str(len(keys)),
            "ccat/sub_group": keys[0] if len(keys) == 1 else f"{keys[0]} (+{len(keys) - 1})",
            "ccat/reason": reasons[0] if len(reasons) == 1 else "mixed",
        },
    )


def launch_request(pipeline: PipelineDef, decisions: Sequence[Decision],
                   batching: bool = True) -> dg.RunRequest:
    """The RunRequest of one launch of :func:`ccat_assets.automation.gap_batches.plan_launches`."""
    step = pipeline.step(decisions[0].step)
    if batching and step.partitioned and step.batch_size > 1:
        return batch_run_request(pipeline, decisions)
    return run_request(pipeline, decisions[0])
