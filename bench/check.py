"""Benchmark: ``ccat-wm check`` of one standing pipeline on PostgreSQL (ops-db and instance).

For each size it builds the pipeline of ``bench/gap_sensor.py`` (``calibrate -> baseline`` per
scan, ``grid`` per source+line) up to date in the ops-db, registers every sub-group as a
partition and reports one materialization per pair with its COMPLETED fingerprint as data
version (runless events: the same event type and tags as a run's), so the two records agree.
Then it times the check of the pipeline:

- ``first_check_s``: the first check;
- ``check_s``: median of the next ones; ``dagster_versions_s`` is the part that reads the
  latest data version of every partition (one storage-id query per step, one fetch per 1,000);
- baseline, in the same run: ``per_partition_versions_s``, the same versions read with one
  query per partition (what a loop over ``fetch_materializations`` per partition costs),
  measured on ``--sample`` partitions and scaled to all of them.

Prints one JSON document to stdout, progress on stderr:

    python -m bench.check --scans 5000
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import sqlalchemy as sa

from bench.gap_sensor import PIPELINE, log, standing_state
from bench.machine import describe
from bench.scratch_db import add_database_argument, scratch_postgres_database
from bench.targets import at_most, figure
from ccat_assets.consistency.snapshot import check_pipelines, latest_versions
from ccat_assets.dagster_face.catalog import load_catalog
from ccat_assets.dagster_face.factory import step_key
from ccat_assets.opsdb import ExecutedReductionStep, ReductionStep, RunStatus
from ccat_assets.opsdb.session import session_scope
from sensors.partitions import sync_partitions


@contextmanager
def dagster_instance(base_url: str) -> Iterator[dg.DagsterInstance]:
    """An instance on its own PostgreSQL database, with psycopg2 as production has it
    (dagster-postgres cannot store events through psycopg 3)."""
    with scratch_postgres_database(base_url, "bench_check") as url:
        url = sa.make_url(url).set(drivername="postgresql+psycopg2").render_as_string(
            hide_password=False)
        with dg.instance_for_test(
                overrides={"storage": {"postgres": {"postgres_url": url}}}) as instance:
            yield instance


def report_materializations(instance: dg.DagsterInstance) -> int:
    """One materialization per COMPLETED pair, its fingerprint as data version."""
    with session_scope() as session:
        rows = session.execute(
            sa.select(ReductionStep.name, ExecutedReductionStep.sub_group_key,
                      ExecutedReductionStep.input_fingerprint)
            .join(ReductionStep, ReductionStep.id == ExecutedReductionStep.reduction_step_id)
            .where(ExecutedReductionStep.status == RunStatus.COMPLETED)).all()
    for step, key, fingerprint in rows:
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=["ccat", PIPELINE, step], partition=key,
            tags={"dagster/data_version": fingerprint}))
    return len(rows)


def timed_check(instance: dg.DagsterInstance) -> tuple[float, int]:
    start = time.perf_counter()
    with session_scope() as session:
        findings = check_pipelines(instance, session, [PIPELINE])
    return time.perf_counter() - start, len(findings)


def versions_batched(instance: dg.DagsterInstance) -> float:
    """Seconds to read every partition's latest data version, as the check does."""
    start = time.perf_counter()
    for step in ("calibrate", "baseline", "grid"):
        latest_versions(instance, step_key(PIPELINE, step), partitioned=True)
    return time.perf_counter() - start


def versions_per_partition(instance: dg.DagsterInstance, sample: int) -> tuple[float, int]:
    """Seconds for one query per partition over ``sample`` partitions of each step, and how
    many partitions there are in all (to scale the figure)."""
    total, timed, elapsed = 0, 0, 0.0
    for step in ("calibrate", "baseline", "grid"):
        key = step_key(PIPELINE, step)
        partitions = sorted(instance.get_materialized_partitions(key))
        total += len(partitions)
        start = time.perf_counter()
        for partition in partitions[:sample]:
            instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1)
        elapsed += time.perf_counter() - start
        timed += min(sample, len(partitions))
    return elapsed / max(timed, 1) * total, total


def run_size(base_url: str, n_scans: int, repeats: int, sample: int) -> dict[str, Any]:
    with standing_state(base_url, n_scans, history=0) as runs, \
            dagster_instance(base_url) as instance:
        with session_scope() as session:
            partitions = sum(sync_partitions(instance, session, load_catalog(session))
                             .values())
        start = time.perf_counter()
        events = report_materializations(instance)
        log(f"[{n_scans}] {runs} runs, {partitions} partitions, {events} materializations "
            f"in {time.perf_counter() - start:.0f} s")
        first_s, findings = timed_check(instance)
        assert findings == 0, f"{findings} disagreement(s) in an agreeing state"
        checks = [timed_check(instance)[0] for _ in range(repeats)]
        batched_s = versions_batched(instance)
        naive_s, materialized = versions_per_partition(instance, sample)
    return {"scans": n_scans, "partitions": partitions, "pairs": runs,
            "materialized_partitions": materialized,
            "first_check_s": round(first_s, 2), "check_s": round(statistics.median(checks), 2),
            "dagster_versions_s": round(batched_s, 2),
            "baseline_per_partition_versions_s": round(naive_s, 2)}


#: The project's own target (docs/operations.md): the first command after an incident answers
#: within seconds on a standing pipeline of ``TARGET_SCANS`` scans.
TARGET_SCANS = 5000
MAX_CHECK_S = 5.0


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    at_size = next((r for r in results if r["scans"] == TARGET_SCANS), None)
    return [at_most(f"ccat-wm check (s), {TARGET_SCANS} scans",
                    at_size and at_size["check_s"], MAX_CHECK_S)]


def figures(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        what = f"{r['scans']} scans, {r['partitions']} partitions"
        rows += [figure(f"ccat-wm check, {what}", r["check_s"], "s"),
                 figure(f"latest data versions, batched, {what}", r["dagster_versions_s"], "s"),
                 figure(f"latest data versions, one query per partition, {what}",
                        r["baseline_per_partition_versions_s"], "s")]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scans", default="5000", help="comma-separated numbers of scans")
    add_database_argument(parser)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample", type=int, default=300,
                        help="partitions per step timed one query each for the baseline")
    args = parser.parse_args()
    logging.getLogger("dagster").setLevel(logging.WARNING)
    results = [run_size(args.database, int(n), args.repeats, args.sample)
               for n in args.scans.split(",")]
    print(json.dumps({
        "benchmark": "check", "database": "postgresql", "dagster_storage": "postgres",
        "machine": describe(),
        "results": results, "targets": targets(results), "figures": figures(results),
    }, indent=2))


if __name__ == "__main__":
    main()
