"""One Dagster instance per code-server process for the sensors, not one per tick.

Dagster builds a sensor's ``context.instance`` anew from the daemon's instance reference at
every evaluation and disposes it after: about 40 ms of the code server's CPU and a new
PostgreSQL connection per storage, each tick of each sensor, which with one-second sensor
intervals was most of the connections a stack opened. The instance is safe to share between
threads (Dagster's webserver serves every request from one), so the sensors of this
project keep one per instance reference for the life of the process. A context built
without a reference (a test's ``build_sensor_context(instance=...)``) keeps its own.
"""

from __future__ import annotations

import threading
from typing import Protocol

import dagster as dg
from dagster._core.instance.ref import InstanceRef
from dagster_shared.serdes import serialize_value

_INSTANCES: dict[str, dg.DagsterInstance] = {}
_LOCK = threading.Lock()


class _EvaluationContext(Protocol):
    @property
    def instance_ref(self) -> InstanceRef | None: ...

    @property
    def instance(self) -> dg.DagsterInstance: ...


def sensor_instance(context: _EvaluationContext) -> dg.DagsterInstance:
    """The process's instance for the context's reference (built on first use), or the
    context's own when it has no reference."""
    ref = context.instance_ref
    if ref is None:
        return context.instance
    key = serialize_value(ref)
    with _LOCK:
        instance = _INSTANCES.get(key)
        if instance is None:
            instance = _INSTANCES[key] = dg.DagsterInstance.from_ref(ref)
        return instance
