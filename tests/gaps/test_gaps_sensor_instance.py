"""The sensors' Dagster instance: one per instance reference and process, not one per tick
(``sensors/instance.py``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef

from sensors.instance import sensor_instance


@dataclass
class _Context:
    """What a sensor's or schedule's evaluation context offers the helper."""

    instance_ref: InstanceRef | None
    own: dg.DagsterInstance | None = None

    @property
    def instance(self) -> dg.DagsterInstance:
        if self.own is None:
            raise AssertionError("the context's own instance was built")
        return self.own


def _ref(home: Path) -> InstanceRef:
    home.mkdir()
    return InstanceRef.from_dir(str(home))


def test_ticks_with_one_reference_share_one_instance(tmp_path: Path) -> None:
    ref = _ref(tmp_path / "home")
    first = sensor_instance(_Context(ref))
    assert sensor_instance(_Context(ref)) is first
    assert sensor_instance(_Context(_ref(tmp_path / "other"))) is not first
    assert first.root_directory == str(tmp_path / "home")


def test_a_context_without_a_reference_keeps_its_own_instance() -> None:
    with dg.DagsterInstance.ephemeral() as own:
        assert sensor_instance(_Context(None, own)) is own


def test_concurrent_ticks_build_the_instance_once(tmp_path: Path) -> None:
    threads = 8
    ref = _ref(tmp_path / "home")
    seen: list[dg.DagsterInstance] = []
    start = threading.Barrier(threads)

    def tick() -> None:
        start.wait()
        seen.append(sensor_instance(_Context(ref)))

    workers = [threading.Thread(target=tick) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(seen) == threads and len({id(i) for i in seen}) == 1
