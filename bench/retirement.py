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
from bench.targets import figure
from ccat_assets.automation.gaps import Decision, PipelineState, Reason
from ccat_assets.automation.retirement import retirable_keys
from ccat_assets.opsdb.migrate import upgrade
from ccat_assets.opsdb.retired import mark_retired, retired_keys
from ccat_assets.opsdb.session import session_scope
from sensors.retire import delete_partitions
from tests.factories import reduced_step

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
    scans = {scan_key(i): (i,) for i in range(n_scans)}
    groups: dict[str, list[int]] = {}
    for i in range(n_scans):
        groups.setdefault(f"source=s{i % GROUPS}__line=CO43", []).append(i)
    maps = {k: tuple(ids) for k, ids in groups.items()}
    steps = (reduced_step("calibrate", ("executed_obs_unit",), scans, dict.fromkeys(scans, T0)),
             reduced_step("baseline", ("executed_obs_unit",), scans, dict.fromkeys(scans, T0)),
             reduced_step("grid", ("source", "line"), maps, dict.fromkeys(maps, T0)))
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
    budget = min(BUDGET, n_scans // 2)  # two budgets are deleted; a tiny run has fewer keys
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
        for key in keys[:budget]:  # as dagster/_daemon/sensor.py applies a delete request
            instance.delete_dynamic_partition(NAME, key)
        per_key_s = time.perf_counter() - start
        start = time.perf_counter()
        delete_partitions(instance, {NAME: keys[budget:2 * budget]})  # what the sensor does
        bulk_s = time.perf_counter() - start
        assert len(instance.get_dynamic_partitions(NAME)) == n_scans - 2 * budget
        return {"add_all_s": round(add_s, 1), "list_partitions_s": list_s, "budget": budget,
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
                      "machine": describe(), "sizes": results, "targets": [],
                      "figures": key_figures(results)}, indent=2))


def key_figures(results: list[dict[str, object]]) -> list[dict[str, object]]:
    """The pass's parts per size, for the report (the issue sets no target)."""
    names = {"rule_s": "the rule over every pair", "mark_budget_s": "recording a budget",
             "read_all_retired_s": "reading every retired key",
             "list_partitions_s": "Dagster listing the partitions",
             "delete_budget_per_key_s": "deleting a budget, a statement per key",
             "delete_budget_bulk_s": "deleting a budget, as the sensor does"}
    return [figure(f"{label}, {row['scans']} scans", row[field], "s")
            for row in results for field, label in names.items() if field in row]


if __name__ == "__main__":
    main()
