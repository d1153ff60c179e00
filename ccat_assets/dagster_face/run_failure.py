"""A failed run as Dagster shows it: the reason, the exit code and the program's last lines.

Why: the Dagster failure is what a person reads first on the run page; "exit code 1" alone
sends them digging in the run directory. The description carries the reason and the last
lines of the program's stderr (or stdout, when stderr is empty), the metadata the same
pieces one by one, for a single run (:mod:`ccat_assets.dagster_face.factory`) and for each failed
member of a batch (:mod:`ccat_assets.dagster_face.batch_job`).
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from ccat_assets.execution.batch import MemberResult
from ccat_assets.execution.execute import RunFailed

#: Dagster stores a failure's description in its event log; keep it readable.
MAX_DESCRIPTION = 4000


def failure_text(what: str, exc: RunFailed) -> str:
    """``calibrate/scan=1: exit code 1`` and, below, the program's last lines."""
    text = f"{what}: {exc.reason}"
    if exc.log_tail:
        text += (f"\nlast {len(exc.log_tail)} lines of {exc.log_stream}:\n"
                 + "\n".join(exc.log_tail))
    return text


def failure_metadata(exc: RunFailed) -> dict[str, Any]:
    metadata: dict[str, Any] = {"ops-db run id": dg.MetadataValue.int(exc.run_id),
                                "status": exc.status.value,
                                "reason": exc.reason}
    if exc.job_id:
        metadata["job_id"] = exc.job_id
    if exc.exit_code is not None:
        metadata["exit_code"] = dg.MetadataValue.int(exc.exit_code)
    if exc.log_tail:
        metadata[f"{exc.log_stream} (last lines)"] = dg.MetadataValue.md(
            "```\n" + "\n".join(exc.log_tail).replace("```", "'''") + "\n```")
    return metadata


def run_failure(what: str, exc: RunFailed) -> dg.Failure:
    """The ``dg.Failure`` a step's asset raises for a failed run."""
    return dg.Failure(description=_cut(failure_text(what, exc)),
                      metadata=failure_metadata(exc))


def batch_failure(n_members: int, failed: Sequence[MemberResult]) -> dg.Failure:
    """The ``dg.Failure`` of a batch run: each failed member with its reason and last lines
    (the first five in the description, all of them in the metadata)."""
    shown = [member_failure_text(m) for m in failed[:5]]
    metadata: dict[str, Any] = {
        "failed_sub_groups": dg.MetadataValue.json([m.key for m in failed]),
        "ops-db run ids": dg.MetadataValue.json(
            [m.run_id for m in failed if m.run_id is not None]),
    }
    codes = {m.key: m.failure.exit_code for m in failed
             if m.failure is not None and m.failure.exit_code is not None}
    if codes:
        metadata["exit_codes"] = dg.MetadataValue.json(codes)
    tails = {m.key: m.failure.log_tail for m in failed
             if m.failure is not None and m.failure.log_tail}
    if tails:
        metadata["last lines"] = dg.MetadataValue.json(tails)
    return dg.Failure(
        description=_cut(f"{len(failed)} of {n_members} sub-groups failed:\n"
                         + "\n\n".join(shown)),
        metadata=metadata)


def member_failure_text(member: MemberResult) -> str:
    """One failed member: its reason, and its program's last lines when its job ran."""
    if member.failure is not None:
        return failure_text(member.key, member.failure)
    return f"{member.key}: {member.error}"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_DESCRIPTION else text[:MAX_DESCRIPTION - 1] + "\u2026"
