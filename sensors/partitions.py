"""Which sub-group keys Dagster's dynamic partitions still lack, as add requests.

Re-adding keys that exist is not free (a dedupe query: ~0.5-0.8 s for 10k keys on
PostgreSQL), so only missing keys are requested, at most 1,000 per request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import dagster as dg

ADD_BATCH = 1000


def missing_partitions(instance: dg.DagsterInstance,
                       wanted: Mapping[str, Iterable[str]]) -> list[dg.AddDynamicPartitionsRequest]:
    """Add requests for the keys of ``wanted`` (partitions def name -> keys) not yet present."""
    requests = []
    for name in sorted(wanted):
        keys = set(wanted[name])
        if not keys:
            continue
        missing = sorted(keys - set(instance.get_dynamic_partitions(name)))
        requests += [dg.AddDynamicPartitionsRequest(partitions_def_name=name,
                                                    partition_keys=missing[i:i + ADD_BATCH])
                     for i in range(0, len(missing), ADD_BATCH)]
    return requests
