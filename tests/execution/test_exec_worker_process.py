"""A process started for one run freezes the collector's view of its imported code; no other
process does (``resources/worker_process.py``).

The spawned child is a real process, started as the code server starts a run worker
(``multiprocessing`` with the ``spawn`` method); it reports what it saw through a queue.
"""

from __future__ import annotations

import gc
import multiprocessing

from resources import worker_process


def _child(queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    before = gc.get_freeze_count()
    worker_process.settle_worker_process()
    worker_process.settle_worker_process()  # a second resource set-up: once is enough
    queue.put((worker_process.started_for_one_run(), before, gc.get_freeze_count()))


def test_a_spawned_run_worker_freezes_what_it_imported_once() -> None:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_child, args=(queue,))
    child.start()
    one_run, before, after = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert one_run
    assert before == 0
    assert after > 10_000  # the imported modules' objects, not a handful


def test_a_long_lived_process_does_not_freeze() -> None:
    """The test session is such a process: frozen garbage would never be freed here."""
    before = gc.get_freeze_count()
    assert not worker_process.started_for_one_run()
    worker_process.settle_worker_process()
    assert gc.get_freeze_count() == before
