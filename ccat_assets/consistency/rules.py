"""Do Dagster and the ops-db tell the same story? The pure comparison behind ``ccat-wm check``.

Both records describe the same work: a (step, sub-group) is materialized in Dagster exactly
when the ops-db has a COMPLETED run for it, with that run's input fingerprint as the data
version; every sub-group is a partition unless it was retired (fully reduced, see
``docs/scale.md``); every run in flight has a live Dagster run behind
it; every queued run has its PENDING rows. This module compares two plain snapshots and lists
each disagreement with what to do about it, so every rule is tested without a database or a
Dagster instance (``ccat_assets/cli/check.py`` gathers the snapshots).

What is *not* a disagreement: a newer failed attempt after an older success (both records
say so); a Dagster run that failed before it claimed a row (a key that is no sub-group, an
upstream not complete, or a batch member deferred for it: the ops-db rightly has no
attempt); a queued run younger than the queued-runs sensor's grace period.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from ccat_assets.opsdb import RunStatus


@dataclass(frozen=True)
class Row:
    """An ExecutedReductionStep, as far as the comparison reads it."""

    id: int
    step: str
    key: str
    status: RunStatus
    fingerprint: str
    dagster_run_id: str | None


@dataclass(frozen=True)
class StepView:
    """One step of a pipeline in both records."""

    name: str
    #: The partitions def name; None for an unpartitioned step (sub-group ``all``).
    partitions_name: str | None
    sub_groups: frozenset[str]
    #: Dagster's partitions of the step (ignored when unpartitioned).
    partitions: frozenset[str] = frozenset()
    #: Data version of the latest materialization per partition (``all`` if unpartitioned).
    versions: Mapping[str, str | None] = field(default_factory=dict)
    #: Partitions whose latest attempt after their last materialization failed: the run id.
    failed: Mapping[str, str] = field(default_factory=dict)
    #: Sub-groups a gap sensor retired from the partitions (fully reduced): not missing.
    retired: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Finding:
    kind: str
    pipeline: str
    step: str
    key: str | None
    detail: str
    remedy: str

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


@dataclass(frozen=True)
class PipelineView:
    name: str
    grouping: str
    steps: tuple[StepView, ...]
    rows: tuple[Row, ...]
    #: Dagster run id -> its status (following automatic retries), None when unknown.
    run_states: Mapping[str, str | None] = field(default_factory=dict)
    #: Queued runs older than the grace period whose pairs have no row: run id -> pairs.
    queued_without_rows: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)


FINISHED = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


def compare(view: PipelineView) -> list[Finding]:
    """Every disagreement of one pipeline, step by step, in a stable order."""
    findings: list[Finding] = []
    by_pair: dict[tuple[str, str], list[Row]] = {}
    for row in sorted(view.rows, key=lambda r: r.id):
        by_pair.setdefault((row.step, row.key), []).append(row)
    for step in view.steps:
        findings += _partitions(view, step)
        keys = set(step.versions) | {k for (s, k) in by_pair if s == step.name}
        for key in sorted(keys):
            findings += _materialization(view, step, key, by_pair.get((step.name, key), []))
    findings += _in_flight(view)
    for run_id, pairs in sorted(view.queued_without_rows.items()):
        for step, key in pairs:
            findings.append(Finding(
                "queued_without_row", view.name, step, key,
                f"Dagster run {run_id} is queued, but the ops-db has no PENDING row for it",
                "check that dagster-daemon runs and that the sensor ccat_queued_runs_sensor is "
                "running; it writes the row within one sensor interval"))
    return findings


def _partitions(view: PipelineView, step: StepView) -> list[Finding]:
    if step.partitions_name is None:
        return []
    out = [Finding("no_partition", view.name, step.name, key,
                   f"sub-group {key!r} is no partition of {step.partitions_name} in Dagster",
                   f"ccat-wm partitions sync {view.name} (or wait for the partitions or gap "
                   "sensor's next tick after new data)")
           for key in sorted(step.sub_groups - step.partitions - step.retired)]
    out += [Finding("partition_without_sub_group", view.name, step.name, key,
                    f"partition {key!r} of {step.partitions_name} matches no raw data of "
                    f"grouping {view.grouping!r} any more",
                    "its products stay in the ops-db; delete the partition in the Dagster UI "
                    "if it should no longer be listed")
            for key in sorted(step.partitions - step.sub_groups)]
    return out


def _materialization(view: PipelineView, step: StepView, key: str,
                     rows: list[Row]) -> list[Finding]:
    """Dagster's latest materialization of the pair against the ops-db's COMPLETED runs."""
    completed = [r for r in rows if r.status == RunStatus.COMPLETED]
    version = step.versions.get(key)
    where = f"ccat/{view.name}/{step.name}" + ("" if step.partitions_name is None
                                              else f" partition {key}")
    rematerialize = (f"materialize {where} again: it re-reports the COMPLETED run without "
                     "running anything")
    if completed:
        newest = completed[-1]
        if key not in step.versions:
            return [Finding("not_materialized", view.name, step.name, key,
                            f"ops-db run {newest.id} is COMPLETED, Dagster shows no "
                            "materialization", rematerialize)]
        if version != newest.fingerprint:
            known = any(r.fingerprint == version for r in completed)
            detail = (f"Dagster's data version {_short(version)} is that of an older "
                      f"COMPLETED run, the newest (run {newest.id}) has "
                      f"{_short(newest.fingerprint)}" if known else
                      f"Dagster's data version {_short(version)} matches no COMPLETED run; "
                      f"the newest (run {newest.id}) has {_short(newest.fingerprint)}")
            return [Finding("data_version_differs", view.name, step.name, key, detail,
                            rematerialize)]
        failed_run = step.failed.get(key)
        done_there = [r for r in completed if r.dagster_run_id == failed_run]
        if failed_run and done_there:
            return [Finding("completed_but_failed_in_dagster", view.name, step.name, key,
                            f"Dagster run {failed_run} failed, but its ops-db run "
                            f"{done_there[-1].id} COMPLETED", rematerialize)]
        return []
    if key in step.versions:
        return [Finding("materialized_without_completed_run", view.name, step.name, key,
                        f"Dagster shows a materialization (data version {_short(version)}), "
                        "the ops-db has no COMPLETED run",
                        f"materialize {where} again: with no COMPLETED run it is reduced anew")]
    return []


def _in_flight(view: PipelineView) -> list[Finding]:
    out: list[Finding] = []
    reconcile = "ccat-wm runs reconcile (the reconcile sensor does it every minute)"
    for row in sorted(view.rows, key=lambda r: r.id):
        if row.status.is_terminal:
            continue
        what = f"ops-db run {row.id} is {row.status.value}"
        if row.dagster_run_id is None:
            out.append(Finding("in_flight_without_dagster_run", view.name, row.step, row.key,
                               f"{what} and names no Dagster run (started outside Dagster)",
                               f"{reconcile}; it ends such rows once their job has ended and "
                               "they have not changed for RECONCILE_ORPHAN_AGE_SECONDS"))
            continue
        state = view.run_states.get(row.dagster_run_id)
        if state is None:
            out.append(Finding("in_flight_unknown_dagster_run", view.name, row.step, row.key,
                               f"{what} for Dagster run {row.dagster_run_id}, which this "
                               "instance does not know", reconcile))
        elif state in FINISHED:
            out.append(Finding("in_flight_dagster_run_ended", view.name, row.step, row.key,
                               f"{what} but its Dagster run {row.dagster_run_id} ended {state}",
                               reconcile))
    return out


def _short(fingerprint: str | None) -> str:
    return "none" if not fingerprint else fingerprint[:19]


def summary(findings: Iterable[Finding]) -> str:
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    if not counts:
        return "consistent: Dagster and the ops-db agree"
    return "disagreements: " + ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
