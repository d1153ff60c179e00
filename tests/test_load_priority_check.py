"""The load benchmark's priority check models Dagster's run queue: it flags a low-priority
launch while a higher-priority run could have started, and nothing the queue rightly did.

Pure: runs are given as spans (queued, launched, ended, slot held until), the queue's
decisions as times; no daemon.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from bench.load import (
    DEAD_RUN_SLOT_HOLD_S,
    RunSpan,
    dead_run_slot_freed,
    find_inversions,
    monitoring_iterations,
    queue_decisions,
)

FAST, SLOW = "load_fast/calibrate", "load_slow/calibrate"  # priorities 10 and 1, limit 1 each


def span(priority: int, pool: str, queued: float, launched: float, ended: float,
         held: float | None = None) -> RunSpan:
    return RunSpan(priority, pool, queued, launched, ended, ended if held is None else held)


def test_a_low_priority_launch_while_the_higher_pool_was_free_is_an_inversion() -> None:
    spans = {"slow": span(1, SLOW, queued=0, launched=20, ended=30),
             "fast": span(10, FAST, queued=5, launched=40, ended=50)}
    found = find_inversions(spans, decisions=[19.5, 39.5], max_concurrent_runs=4, lag_s=5)
    assert [(i["launched"], i["waiting"]) for i in found] == [(f"slow {SLOW}", f"fast {FAST}")]


def test_a_busy_pool_is_the_reason_not_an_inversion() -> None:
    spans = {"holder": span(10, FAST, queued=0, launched=1, ended=35),
             "slow": span(1, SLOW, queued=0, launched=20, ended=30),
             "fast": span(10, FAST, queued=5, launched=40, ended=50)}
    assert find_inversions(spans, [0.5, 19.5, 39.5], 4, 5) == []


def test_the_queue_is_judged_when_it_decided_not_when_it_launched() -> None:
    """The holder ended between the decision (19) and the slow launch (27, the iteration's
    launches took seconds): the fast run was blocked when the queue looked."""
    spans = {"holder": span(10, FAST, queued=0, launched=1, ended=22),
             "slow": span(1, SLOW, queued=0, launched=27, ended=30),
             "fast": span(10, FAST, queued=5, launched=40, ended=50)}
    assert find_inversions(spans, [0.5, 19.0, 39.5], 4, 5) == []
    # With only a fixed margin before the launch the same history reads as an inversion.
    assert len(find_inversions(spans, [], 4, 2)) == 1


def test_a_dead_run_holds_its_slot_until_monitoring_frees_it() -> None:
    failed_at = 10.0
    freed = failed_at + DEAD_RUN_SLOT_HOLD_S
    spans = {"killed": span(10, FAST, queued=0, launched=1, ended=failed_at, held=freed),
             "slow": span(1, SLOW, queued=0, launched=freed - 5, ended=freed),
             "fast": span(10, FAST, queued=5, launched=freed + 20, ended=freed + 30)}
    assert find_inversions(spans, [0.5, freed - 5.5, freed + 19.5], 4, 5) == []
    # had the slot been free at the decision, passing over "fast" would be an inversion
    spans["killed"] = span(10, FAST, queued=0, launched=1, ended=failed_at, held=failed_at)
    assert len(find_inversions(spans, [0.5, freed - 5.5, freed + 19.5], 4, 5)) == 1


def test_the_instance_run_limit_is_the_reason_not_an_inversion() -> None:
    spans = {"other": span(5, "load_cron/map", queued=0, launched=1, ended=25),
             "slow": span(1, SLOW, queued=0, launched=20, ended=30),
             "fast": span(10, FAST, queued=5, launched=40, ended=50)}
    assert len(find_inversions(spans, [0.5, 19.5, 39.5], max_concurrent_runs=2, lag_s=5)) == 1
    assert find_inversions(spans, [0.5, 19.5, 39.5], max_concurrent_runs=1, lag_s=5) == []


def test_a_run_queued_after_the_decision_was_not_passed_over() -> None:
    spans = {"slow": span(1, SLOW, queued=0, launched=20, ended=30),
             "fast": span(10, FAST, queued=19.8, launched=40, ended=50)}
    assert find_inversions(spans, [19.5, 39.5], 4, 5) == []


def test_a_run_enqueued_twice_counts_from_its_last_enqueue() -> None:
    """A daemon killed after storing a run's RUN_ENQUEUED event but before its status left it
    NOT_STARTED; the resumed sensor tick enqueued it again, and only then could the queue see
    it. Its first launch is the one that counts."""
    from types import SimpleNamespace as Record

    from bench.load import times_by_run

    enqueued = [Record(run_id="fast", timestamp=17.0), Record(run_id="slow", timestamp=16.0),
                Record(run_id="fast", timestamp=26.0)]
    assert times_by_run(enqueued, last=True) == {"fast": 26.0, "slow": 16.0}
    assert times_by_run(enqueued, last=False) == {"fast": 17.0, "slow": 16.0}
    # Judged from the last enqueue, the slow launch at 28 (decided at 25) passed nothing over.
    spans = {"slow": span(1, SLOW, queued=16, launched=28, ended=40),
             "fast": span(10, FAST, queued=26, launched=40, ended=50)}
    assert find_inversions(spans, [25.0, 39.5], 4, 5) == []
    spans["fast"] = span(10, FAST, queued=17, launched=40, ended=50)
    assert len(find_inversions(spans, [25.0, 39.5], 4, 5)) == 1


def test_a_dead_runs_slot_is_freed_by_the_first_monitoring_pass_after_its_last_update(
        tmp_path: Path) -> None:
    """Seen in a chaos run: a killed run ended at :42.7, its retry tagged it at :47.5, and
    monitoring (every 10 s) found it updated too recently at :52 and freed its slot in the
    pass at :02, after the queue's decision at :00 passed over the runs of its pool. Counted
    from its end (:42.7 + 15 s) the slot looked free at :00: 28 "inversions"."""
    minute = "2026-12-07 08:30:"
    log = tmp_path / "daemon.log"
    log.write_text("\n".join([
        f"\x1b[32m{minute}42 +0000\x1b[0m - dagster.daemon.MonitoringDaemon - INFO - "
        "Collected 1 runs for monitoring",
        f"\x1b[32m{minute}42 +0000\x1b[0m - dagster.daemon.MonitoringDaemon - INFO - "
        "Checking run killed",
        f"\x1b[32m{minute}52 +0000\x1b[0m - dagster.daemon.MonitoringDaemon - INFO - "
        "Collected 1 runs for monitoring",
        f"\x1b[32m{minute}53 +0000\x1b[0m - dagster.daemon.MonitoringDaemon - INFO - "
        "Checking run other",
        f"\x1b[32m{minute}55 +0000\x1b[0m - dagster.daemon.QueuedRunCoordinatorDaemon - INFO - "
        "Priority sorting and checking tag concurrency limits for queued runs.",
        "2026-12-07 08:31:02 +0000 - dagster - DEBUG - a run worker's line, no daemon",
        "\x1b[32m2026-12-07 08:31:02 +0000\x1b[0m - dagster.daemon.MonitoringDaemon - INFO - "
        "Collected 2 runs for monitoring",
        "\x1b[32m2026-12-07 08:31:03 +0000\x1b[0m - dagster.daemon.MonitoringDaemon - INFO - "
        "Checking run cron",
    ]) + "\n")
    start = dt.datetime.fromisoformat("2026-12-07T08:30:00+00:00").timestamp()

    def at(second: float) -> float:
        return start + second

    iterations = monitoring_iterations(log)
    assert iterations == [(at(42), at(42)), (at(52), at(53)), (at(62), at(63))]
    assert queue_decisions(log) == [at(55)]
    # Updated at :47.5: the pass at :52 finds it too recent (5 s), the one at :02 frees it.
    assert dead_run_slot_freed(at(47.5), iterations) == at(64)
    # Updated at :45: freed by the pass at :52 (its last line :53, plus the log's second).
    assert dead_run_slot_freed(at(45), iterations) == at(54)
    # No pass logged after it, or only long after (passes with no live run log nothing):
    # a poll later at most.
    assert dead_run_slot_freed(at(70), iterations) == at(70) + DEAD_RUN_SLOT_HOLD_S
    assert dead_run_slot_freed(at(5), iterations) == at(5) + DEAD_RUN_SLOT_HOLD_S
