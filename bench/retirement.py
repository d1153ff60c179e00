"""Benchmark: what retiring reduced sub-groups costs a gap sensor tick at CCAT's scale.

Retirement (``docs/scale.md``) adds work to a gap sensor's tick: the rule over every pair of
the pipeline, listing a grain's partitions, writing a tick's budget of ``retired_partition``
rows, and the daemon deleting those keys from Dagster one statement each; an arrival tick
reads every retired key. For each size, on PostgreSQL (a scratch schema for the ops-db and a
scratch database for the Dagster instance):

- ``rule_s``: :func:`retirable_keys` over the standing pipeline's shape (two per-scan steps,
  a step per source and line over 200 groups), everything reduced long ago (median of 3);
- ``mark_budget_s`` / ``read_all_retired_s``: writing one tick's budget (1,000 rows) into a
  table that already holds every other key, and reading all of them back;
- ``list_partitions_s``: Dagster listing a grain of that many partitions;
  ``delete_budget_per_key_s``: deleting a budget of them as the daemon would apply a
  sensor's ``DeleteDynamicPartitionsRequest`` (a statement and a connection per key), and
  ``delete_budget_bulk_s`` as the gap sensor does it (``sensors/retire.py``); only up to
  ``--dagster-scans``, since adding the partitions takes about a minute per 100k.

Prints one JSON document, progress on stderr::

    python bench/retirement.py --scans 100000,400000 --dagster-scans 100000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from collections.abc import Callable

from bench.gap_sensor import dagster_instance, postgres_schema
from bench.machine import describe
from bench.scratch_db import add_database_argument
from ccat_assets.automation.gaps import CompletedRun, Decision, PipelineState, Reason, StepState
from ccat_assets.automation.retirement import retirable_keys
from ccat_assets.grouping import SubGroup
from ccat_assets.opsdb.enums import VersionPolicy
from ccat_assets.opsdb.migrate import upgrade
from ccat_assets.opsdb.retired import mark_retired, retired_keys
from ccat_assets.opsdb.session import session_scope
from sensors.retire import delete_partitions

BUDGET = 1000
GROUPS = 200
T0 = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
NAME = "bench__executed_obs_unit"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def median_s(action: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 3)


def scan_key(i: int) -> str:
    return f"executed_obs_unit=scan-{i:07d}"


def standing_state(n_scans: int) -> tuple[PipelineState, list[Decision]]:
    """calibrate and baseline per scan, grid per source and line; all reduced in 2020."""
    def step(name: str, group_by: tuple[str, ...],
             packages: dict[str, tuple[int, ...]]) -> StepState:
        done = CompletedRun(run_id=1, fingerprint="fp", config_hash="cfg", version="1.0.0",
                            finished_at=T0)
        return StepState(
            name=name, group_by=group_by, depends_on=(), cooldown_seconds=0, max_retries=0,
            schedule=None, config_hash="cfg", version_policy=VersionPolicy.COMPATIBLE,
            version="1.0.0",
            subgroups={k: SubGroup(key=k, dimensions={}, raw_data_package_ids=ids,
                                   package_checksums=(), newest_input_at=T0)
                       for k, ids in packages.items()},
            completed=dict.fromkeys(packages, done))

    scans = {scan_key(i): (i,) for i in range(n_scans)}
    groups: dict[str, list[int]] = {}
    for i in range(n_scans):
        groups.setdefault(f"source=s{i % GROUPS}__line=CO43", []).append(i)
    maps = {k: tuple(ids) for k, ids in groups.items()}
    steps = (step("calibrate", ("executed_obs_unit",), scans),
             step("baseline", ("executed_obs_unit",), scans),
             step("grid", ("source", "line"), maps))
    decisions = [Decision(step=s.name, key=k, fire=False, reason=Reason.UP_TO_DATE)
                 for s in steps for k in s.subgroups]
    return PipelineState(name="bench", priority=0, steps=steps, package_keys={}), decisions


def measure_rule(n_scans: int) -> dict[str, float | int]:
    state, decisions = standing_state(n_scans)
    found: dict[tuple[str, ...], set[str]] = {}

    def run() -> None:
        found.update(retirable_keys(state, decisions, now=NOW, grace=dt.timedelta(days=30)))

    seconds = median_s(run)
    return {"pairs": len(decisions), "rule_s": seconds,
            "retirable": sum(len(keys) for keys in found.values())}


def measure_opsdb(base_url: str, n_scans: int) -> dict[str, float]:
    keys = [scan_key(i) for i in range(n_scans)]
    with postgres_schema(base_url) as url:
        upgrade(url)
        with session_scope(url) as session:
            mark_retired(session, {NAME: keys[BUDGET:]}, at=NOW)
        start = time.perf_counter()
        with session_scope(url) as session:
            mark_retired(session, {NAME: keys[:BUDGET]}, at=NOW)
        mark_s = time.perf_counter() - start

        def read() -> None:
            with session_scope(url) as session:
                assert len(retired_keys(session, [NAME])[NAME]) == n_scans

        return {"mark_budget_s": round(mark_s, 3), "read_all_retired_s": median_s(read)}


def measure_dagster(base_url: str, n_scans: int) -> dict[str, float]:
    keys = [scan_key(i) for i in range(n_scans)]
    with dagster_instance(base_url, "postgres") as instance:
        start = time.perf_counter()
        for i in range(0, n_scans, BUDGET):
            instance.add_dynamic_partitions(NAME, keys[i:i + BUDGET])
        add_s = time.perf_counter() - start
        listed: list[str] = []

        def list_all() -> None:
            listed[:] = instance.get_dynamic_partitions(NAME)

        list_s = median_s(list_all)
        assert len(listed) == n_scans
        start = time.perf_counter()
        for key in keys[:BUDGET]:  # as dagster/_daemon/sensor.py applies a delete request
            instance.delete_dynamic_partition(NAME, key)
        per_key_s = time.perf_counter() - start
        start = time.perf_counter()
        delete_partitions(instance, {NAME: keys[BUDGET:2 * BUDGET]})  # what the sensor does
        bulk_s = time.perf_counter() - start
        assert len(instance.get_dynamic_partitions(NAME)) == n_scans - 2 * BUDGET
        return {"add_all_s": round(add_s, 1), "list_partitions_s": list_s,
                "delete_budget_per_key_s": round(per_key_s, 3),
                "delete_budget_bulk_s": round(bulk_s, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", default="100000,400000",
                        help="comma-separated scan counts")
    parser.add_argument("--dagster-scans", type=int, default=100000,
                        help="largest size whose Dagster part is measured (0: none)")
    add_database_argument(parser)
    args = parser.parse_args()
    sizes = [int(n) for n in args.scans.split(",")]
    results = []
    for n in sizes:
        log(f"[{n} scans] the rule")
        row: dict[str, object] = {"scans": n, **measure_rule(n)}
        log(f"[{n} scans] the ops-db")
        row.update(measure_opsdb(args.database, n))
        if n <= args.dagster_scans:
            log(f"[{n} scans] Dagster's partitions")
            row.update(measure_dagster(args.database, n))
        log(json.dumps(row))
        results.append(row)
    print(json.dumps({"benchmark": "retirement", "budget_per_tick": BUDGET,
                      "machine": describe(), "sizes": results}, indent=2))


if __name__ == "__main__":
    main()
