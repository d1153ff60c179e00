"""``kill -9`` of ``dagster-daemon`` in the middle of a gap-sensor tick, then a restart: every
gap is filled once, with no duplicate run for any (step, sub-group, fingerprint).

Integration: PostgreSQL for the ops-db and for the Dagster instance (the production
``deploy/dagster.postgres.yaml``), a real daemon with its code server, the local backend
running the test program.

Where a tick is hit: after the sensor's evaluation the daemon stores one reserved run id per
run request on the STARTED tick, then creates and queues the runs one by one (an execution
plan from the code server and a few writes each). The test registers ``N_SCANS`` scans at
once, so the first tick asks for one calibrate run per scan. The instance's run coordinator
is Dagster's queued one with a fault point (``tests/reliability/fault_coordinator.py``):
the daemon pauses before queueing the tick's run number ``KILL_AT``, which it has just
created, and the test kills its whole process group (daemon and code server) there. It then
checks from the stored state that the kill landed there: the tick is still STARTED, fewer
runs exist than it reserved, the last one created never queued.

While the first daemon lives the run queue is held (``max_concurrent_runs: 0``), so no run
worker is executing when the group is killed: this test is about the tick (a run worker
killed with the group is ``test_rel_run_worker_killed.py``). The restarted daemon has the
production limit and fills every gap: the resumed tick queues the runs it had not created,
later ticks launch the downstream step.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from dagster._core.scheduler.instigation import InstigatorTick, InstigatorType, TickStatus

from ccat_assets import fault_points
from ccat_assets.automation.gaps import Reason, evaluate
from ccat_assets.automation.gapstate.load import load_pipeline_state
from ccat_assets.opsdb import (
    DataProduct,
    DataProductType,
    ExecutedReductionStep,
    ReductionStep,
    RunStatus,
)
from ccat_assets.opsdb.session import session_scope
from ccat_assets.opsdb.types import utcnow
from tests.daemonkit import (  # noqa: F401 - daemon_env_fixture is the fixture daemon_env
    ROOT,
    completed_runs,
    daemon_env_fixture,
    disagreements,
    kill_daemon,
    start_daemon,
    stop_daemon,
    wait_for,
)
from tests.deploy.conftest import postgres_dagster_home  # noqa: F401 - fixture
from tests.gaps.conftest import served_env  # noqa: F401 - fixture
from tests.gaps.gapkit import PIPELINE, SENSOR, apply_pipeline, ingest, map_key, scan_key

SOURCE, LINE = "NGC253", "CO43"
N_SCANS = 6
FILES_PER_PACKAGE = 2  # tests.factories.write_observations
#: Kill when the tick has created its run number ``KILL_AT`` and is about to queue it.
KILL_AT = 3
RUN_KEY_TAG, SENSOR_TAG = "dagster/run_key", "dagster/sensor_name"
TERMINAL = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
            dg.DagsterRunStatus.CANCELED}


@dataclass
class Kill:
    """What the stored state said right after the kill."""

    tick_id: int
    reserved: int
    created: int
    #: Created but not yet queued: the kill fell between creating a run and submitting it.
    not_queued: int
    elapsed_s: float


def set_run_limit(home: Path, limit: int) -> None:
    path = home / "dagster.yaml"
    config = yaml.safe_load(path.read_text())
    config["concurrency"]["runs"]["max_concurrent_runs"] = limit
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def sensor_ticks(instance: dg.DagsterInstance, limit: int = 1) -> list[InstigatorTick]:
    states = [s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
              if s.name == SENSOR]
    if not states:
        return []
    return list(instance.get_ticks(states[0].instigator_origin_id, states[0].selector_id,
                                   limit=limit))


def runs_created(instance: dg.DagsterInstance, tick: InstigatorTick,
                 statuses: list[dg.DagsterRunStatus] | None = None) -> int:
    """How many of the runs ``tick`` reserved exist (with one of ``statuses``)."""
    ids = list(tick.tick_data.reserved_run_ids or [])
    return instance.get_runs_count(dg.RunsFilter(run_ids=ids, statuses=statuses)) if ids else 0


def use_fault_coordinator(home: Path) -> None:
    """The production instance but for its run coordinator, which has the fault point."""
    path = home / "dagster.yaml"
    config = yaml.safe_load(path.read_text())
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    config["run_coordinator"].update(module="tests.reliability.fault_coordinator",
                                     **{"class": "FaultPointRunCoordinator"})
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def kill_mid_tick(instance: dg.DagsterInstance, daemon: subprocess.Popen[bytes],
                  log: Path, marker: Path, timeout_s: float = 90) -> Kill:
    """Kill the daemon's process group where it paused, queueing the tick's run ``KILL_AT``;
    return what the stored tick said after the kill."""
    start = time.monotonic()
    try:
        pid = fault_points.wait_paused(marker, timeout_s, alive=lambda: daemon.poll() is None)
    except AssertionError as exc:
        pytest.fail(f"{exc}:\n{log.read_text()[-3000:]}")
    assert pid == daemon.pid  # the sensor thread runs in the daemon's own process
    kill_daemon(daemon)  # and wait until no process of its group is alive
    elapsed = time.monotonic() - start
    [tick] = sensor_ticks(instance)
    reserved, created = len(tick.tick_data.reserved_run_ids or []), runs_created(instance, tick)
    # The queue was held: no run of the tick had a worker that the kill could take down.
    assert runs_created(instance, tick, [dg.DagsterRunStatus.NOT_STARTED,
                                         dg.DagsterRunStatus.QUEUED]) == created
    not_queued = runs_created(instance, tick, [dg.DagsterRunStatus.NOT_STARTED])
    # the kill landed inside the tick's submission: STARTED, some runs created, not all
    assert tick.status == TickStatus.STARTED, tick.status
    assert (created, not_queued, reserved) == (KILL_AT, 1, N_SCANS)
    return Kill(tick.tick_id, reserved, created, not_queued, elapsed)


def all_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs())


def gaps_left() -> list[tuple[str, str, str]]:
    """Every (step, sub-group, reason) that is not up to date, evaluated from scratch."""
    with session_scope() as session:
        state = load_pipeline_state(session, PIPELINE)
    return [(d.step, d.key, d.reason.value) for d in evaluate(state, utcnow())
            if d.reason != Reason.UP_TO_DATE]


@pytest.fixture
def home(daemon_env: dict[str, str]) -> Path:
    return Path(daemon_env["DAGSTER_HOME"])


@pytest.fixture
def instance(home: Path) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.from_config(str(home)) as inst:
        yield inst


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_daemon_killed_mid_tick_launches_each_gap_once(
        daemon_env: dict[str, str], home: Path, instance: dg.DagsterInstance,
        tmp_path: Path) -> None:
    t0 = time.monotonic()
    env = {**daemon_env, "CCAT_WORKFLOW_MANAGER_SENSOR_MAX_RUNS_PER_TICK": str(N_SCANS),
           "PYTHONPATH": str(ROOT)}  # the fault coordinator's module
    apply_pipeline(tmp_path, calibrate={"max_concurrent_runs": 3})
    workspace, log = tmp_path / "workspace.yaml", tmp_path / "daemon.log"
    scans = [(f"scan-{i:02d}", SOURCE, LINE) for i in range(N_SCANS)]
    set_run_limit(home, 0)  # hold the queue: nothing executes while the first daemon lives
    use_fault_coordinator(home)
    marker = tmp_path / "fault"
    ingest(tmp_path, scans, night="2026-11-01")
    daemon = start_daemon({**env, **fault_points.arm("run-queued", marker, nth=KILL_AT)},
                          workspace, log)
    try:
        kill = kill_mid_tick(instance, daemon, log, marker)
    finally:
        stop_daemon(daemon)
    t_kill = time.monotonic()

    set_run_limit(home, 3)
    daemon = start_daemon(env, workspace, log)
    try:
        groups = {map_key(s, line) for _, s, line in scans}
        everything = {("calibrate", scan_key(s)) for s, _, _ in scans} | {
            ("grid", k) for k in groups}
        wait_for("every gap filled", lambda: set(completed_runs()) >= everything and all(
            r.status in TERMINAL for r in all_runs(instance)), daemon, log, timeout_s=300,
            interval_s=0.5)
        t_done = time.monotonic()
        # One more tick, started after the last run ended: it must launch nothing.
        last = sensor_ticks(instance)[0].tick_id
        wait_for("one more sensor tick", lambda: any(
            t.tick_id > last and t.status != TickStatus.STARTED
            for t in sensor_ticks(instance, 5)), daemon, log, interval_s=0.2)
        after = [t for t in sensor_ticks(instance, 5) if t.tick_id > last]
        assert {t.status for t in after} <= {TickStatus.SKIPPED, TickStatus.STARTED}, after
    finally:
        stop_daemon(daemon)
    print(f"\nkilled with {kill.created}/{kill.reserved} runs of tick {kill.tick_id} created "
          f"({kill.not_queued} not yet queued), "
          f"{kill.elapsed_s:.1f} s after the daemon started; "
          f"set-up and kill {t_kill - t0:.1f} s, restart to every gap filled "
          f"{t_done - t_kill:.1f} s")

    # The interrupted tick was resumed and finished, not left dangling.
    interrupted = instance.schedule_storage.get_tick(kill.tick_id)
    assert interrupted.status in (TickStatus.SUCCESS, TickStatus.SKIPPED), interrupted.status
    # Every run the interrupted tick reserved exists (the resumed tick created the rest).
    reserved = set(interrupted.tick_data.reserved_run_ids or [])
    runs = all_runs(instance)
    assert reserved <= {r.run_id for r in runs}

    # Dagster: one run per run key, all launched by the gap sensor and succeeded, each for its
    # own (step, sub-group).
    assert {r.tags.get(SENSOR_TAG) for r in runs} == {SENSOR}
    keys = Counter(r.tags.get(RUN_KEY_TAG) for r in runs)
    assert {k: n for k, n in keys.items() if n > 1} == {}
    assert None not in keys, "a run without run key"
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    pairs = Counter((r.tags["ccat/step"], r.tags["ccat/sub_group"]) for r in runs)
    assert set(pairs) == everything and set(pairs.values()) == {1}

    # ops-db: exactly one row per (step, sub-group, fingerprint), COMPLETED, and no other rows.
    with session_scope() as session:
        rows = session.execute(
            sa.select(ReductionStep.name, ExecutedReductionStep.sub_group_key,
                      ExecutedReductionStep.input_fingerprint, ExecutedReductionStep.status,
                      ExecutedReductionStep.dagster_run_id, ExecutedReductionStep.id)
            .join(ReductionStep, ReductionStep.id == ExecutedReductionStep.reduction_step_id)
        ).all()
        products = session.execute(
            sa.select(DataProduct.executed_reduction_step_id, DataProduct.relative_path,
                      DataProduct.data_product_type)).all()
    triples = Counter((step, key, fp) for step, key, fp, *_ in rows)
    assert {t: n for t, n in triples.items() if n > 1} == {}
    assert {status for *_, status, _, _ in rows} == {RunStatus.COMPLETED}
    assert {(step, key) for step, key, *_ in rows} == everything and len(rows) == len(everything)
    by_run_key = {r.tags[RUN_KEY_TAG]: r.run_id for r in runs}
    for step, key, fp, _, dagster_run_id, _ in rows:
        assert by_run_key[f"{step}:{key}:{fp}"] == dagster_run_id

    # Products: each recorded once; one output file per input of the run, besides logs.
    assert not [p for p, n in Counter((e, path) for e, path, _ in products).items() if n > 1]
    outputs = Counter(e for e, _, kind in products if kind != DataProductType.LOG)
    for step, key, _, _, _, ers in rows:
        # calibrate reads its scan's raw files; grid every raw file and calibrate output.
        inputs = FILES_PER_PACKAGE if step == "calibrate" else 2 * FILES_PER_PACKAGE * len(scans)
        assert outputs[ers] == inputs, (step, key)

    # The final state is what a from-scratch gap evaluation calls up to date.
    assert gaps_left() == []
    assert disagreements(home) == []  # ccat-wm check
