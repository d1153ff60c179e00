"""Which sub-groups are reduced for good: the rule behind retiring partitions.

Dagster's UI slows down with the number of dynamic partitions (``docs/scale.md``), while only
a small part of the scans is ever in motion. A sub-group that is fully reduced can leave the
pipeline's partition set; the ops-db keeps its runs, products and lineage. This module only
decides which sub-groups qualify; removing and restoring partitions is the sensors' work.

A sub-group key of a grain is *retirable* at ``now`` when

- every step of that grain is up to date for it (a COMPLETED run with the current
  fingerprint: not failed, not in flight, not waiting for its cooldown or a new version),
- the newest of those runs finished at least ``grace`` ago, and
- no pair of any other grain that shares raw data with it is anything but up to date: a scan
  stays while the map of its source and line, or the calibration of a scan it is mapped with,
  still has work to do.

It is pure: the gap evaluation's state and decisions in, keys out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from ccat_assets.automation.gaps import Decision, PipelineState, Reason

#: Grain (a step's ``group_by``) -> its retirable sub-group keys.
Retirable = dict[tuple[str, ...], set[str]]


def retirable_keys(state: PipelineState, decisions: Iterable[Decision], *,
                   now: dt.datetime, grace: dt.timedelta) -> Retirable:
    """The sub-group keys of each grain that may leave the partition set at ``now``."""
    reasons = {(d.step, d.key): d.reason for d in decisions}
    busy_packages: set[int] = set()
    settled: dict[tuple[str, ...], dict[str, bool]] = {}
    packages: dict[tuple[str, ...], dict[str, tuple[int, ...]]] = {}
    cutoff = now - grace
    for step in state.steps:
        keys = settled.setdefault(step.group_by, {})
        for key, subgroup in step.subgroups.items():
            packages.setdefault(step.group_by, {})[key] = subgroup.raw_data_package_ids
            done = reasons.get((step.name, key)) == Reason.UP_TO_DATE
            if not done:
                busy_packages.update(subgroup.raw_data_package_ids)
            finished = step.completed[key].finished_at if key in step.completed else None
            old_enough = finished is not None and finished <= cutoff
            keys[key] = keys.get(key, True) and done and old_enough
    return {grain: {key for key, ok in keys.items()
                    if ok and busy_packages.isdisjoint(packages[grain][key])}
            for grain, keys in settled.items()}
