"""``execute_batch``: many sub-groups of one step as one array job, on the local backend and
on the real loopback SLURM cluster. Each member has its own run row, products and status; a
failing member fails alone; a batch run again skips what completed."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from ccat_assets.dagster_face.checks import FILES, QUALITY, judge_runs
from ccat_assets.execution import execute as execute_module
from ccat_assets.execution.batch import execute_batch
from ccat_assets.execution.execute import (
    Busy,
    Claimed,
    Deferred,
    JobEnded,
    Reused,
    RunFailed,
    RunOutcome,
    claim_runs,
    finish_runs,
    record_submission,
    stage_runs,
    wait_jobs,
)
from ccat_assets.execution.jobs import submit_array
from ccat_assets.execution.pair_rows import read_pair_rows
from ccat_assets.execution.queued_rows import QueuedPair, record_queued
from ccat_assets.grouping import subgroup_key
from ccat_assets.opsdb import (
    DataLocation,
    DataProduct,
    DataProductType,
    ExecutedReductionStep,
    PhysicalCopy,
    RunStatus,
)
from ccat_assets.opsdb.session import session_scope
from ccat_assets.settings import get_settings
from resources.apptainer import HostRuntime
from resources.backends.local import LocalBackend
from resources.backends.slurm import SlurmBackend
from resources.backends.ssh import SSHTarget
from resources.staging import make_stager
from tests.execution.conftest import apply_and_ingest
from tests.factories import pipeline_spec

SCANS = [(f"scan-{i:03d}", "NGC253", "CO43") for i in range(6)]
KEYS = [subgroup_key(["executed_obs_unit"], [scan]) for scan, _, _ in SCANS]


def _setup(tmp_path: Path, *, fail_key: str | None = None) -> None:
    spec = pipeline_spec(tmp_path / "processing",
                         extra_step_params={"fail_sub_group": fail_key} if fail_key else None)
    apply_and_ingest(tmp_path, spec, SCANS)


def _rows() -> list[ExecutedReductionStep]:
    with session_scope() as session:
        rows = list(session.scalars(sa.select(ExecutedReductionStep)
                                    .order_by(ExecutedReductionStep.id)))
        session.expunge_all()
        return rows


def _products(run_id: int, *, logs: bool = False) -> int:
    """How many products (LOG ones with ``logs``, else the others) the run recorded."""
    is_log = DataProduct.data_product_type == DataProductType.LOG
    with session_scope() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(DataProduct)
                              .where(DataProduct.executed_reduction_step_id == run_id,
                                     is_log if logs else ~is_log)) or 0


def test_local_batch_one_supervisor_a_failing_member_alone_and_rerun_skips(
    ccat_env: Path, tmp_path: Path, make_services,
) -> None:
    _setup(tmp_path, fail_key=KEYS[2])
    backend = LocalBackend(get_settings().jobs_dir, max_parallel=2)
    log: list[str] = []
    services = make_services(backend, HostRuntime(), make_stager, log=log.append)

    results = execute_batch(services, pipeline_name="chai_test", step_name="calibrate",
                            sub_group_keys=KEYS, dagster_run_id="batch-1", max_parallel=2)

    assert [r.key for r in results] == KEYS
    failed = [r for r in results if r.failed]
    assert [r.key for r in failed] == [KEYS[2]] and "exit code 3" in failed[0].error
    done = [r for r in results if r.outcome is not None]
    assert len(done) == 5 and all(r.outcome.status == RunStatus.COMPLETED for r in done)
    # one array: every member's job id is <array>#<i>, one array directory, one supervisor
    arrays = {r.outcome.job_id.split("#")[0] for r in done}
    assert len(arrays) == 1 and sorted(int(r.outcome.job_id.split("#")[1]) for r in done) == [
        0, 1, 3, 4, 5]
    assert [p.name for p in get_settings().jobs_dir.iterdir() if not p.name.startswith(".")] \
        == list(arrays)
    rows = _rows()
    assert len(rows) == 6 and {r.dagster_run_id for r in rows} == {"batch-1"}
    by_key = {r.sub_group_key: r for r in rows}
    assert by_key[KEYS[2]].status == RunStatus.FAILED
    assert _products(by_key[KEYS[2]].id) == 0  # nothing of the failed program ...
    assert _products(by_key[KEYS[2]].id, logs=True) >= 1  # ... but its logs
    for key in KEYS[:2] + KEYS[3:]:
        assert by_key[key].status == RunStatus.COMPLETED
        assert _products(by_key[key].id) == 2  # one per raw file
    assert any("one local array" in line for line in log)

    # the same batch again (Dagster's retry of the failed run): only the failed member runs
    again = execute_batch(services, pipeline_name="chai_test", step_name="calibrate",
                          sub_group_keys=KEYS, dagster_run_id="batch-1-retry", max_parallel=2)
    assert [r.key for r in again if r.skipped] == KEYS[:2] + KEYS[3:]
    assert [r.key for r in again if r.failed] == [KEYS[2]]
    rows = _rows()
    assert len(rows) == 7 and rows[-1].sub_group_key == KEYS[2]
    assert rows[-1].retry_count == 1


def test_a_member_with_incomplete_upstream_fails_alone(
    ccat_env: Path, tmp_path: Path, make_services,
) -> None:
    _setup(tmp_path)
    backend = LocalBackend(get_settings().jobs_dir, max_parallel=2)
    services = make_services(backend, HostRuntime(), make_stager)
    grid_key = subgroup_key(["source", "line"], ["NGC253", "CO43"])
    results = execute_batch(services, pipeline_name="chai_test", step_name="grid",
                            sub_group_keys=[grid_key], dagster_run_id="b")
    assert results[0].failed and "upstream not complete" in results[0].error
    assert _rows() == []


def test_an_automation_launched_member_with_incomplete_upstream_is_deferred(
    ccat_env: Path, tmp_path: Path, make_services,
) -> None:
    """The race of a busy pipeline: the gap sensor queued the map (its placeholder written),
    new scans arrived before the run started. Not a failure: no attempt, no placeholder."""
    _setup(tmp_path)
    grid_key = subgroup_key(["source", "line"], ["NGC253", "CO43"])
    with session_scope() as session:
        written = record_queued(session, [QueuedPair("chai_test", "grid", grid_key)],
                                dagster_run_id="gap-run", trigger_reason="new_data",
                                base_dir=get_settings().pipelines_dir, backend="local",
                                runtime="host")
    assert len(written) == 1 and [r.status for r in _rows()] == [RunStatus.PENDING]
    log: list[str] = []
    backend = LocalBackend(get_settings().jobs_dir, max_parallel=2)
    services = make_services(backend, HostRuntime(), make_stager, log=log.append)
    results = execute_batch(services, pipeline_name="chai_test", step_name="grid",
                            sub_group_keys=[grid_key], dagster_run_id="gap-run",
                            defer_incomplete=True)
    assert not results[0].failed and results[0].run_id is None
    assert results[0].deferred and "upstream not complete" in results[0].deferred
    assert _rows() == []  # the placeholder is gone, and no failed attempt was written
    assert any("deferred" in line for line in log)


def test_an_automation_launched_retry_re_attaches_though_new_scans_left_the_upstream_incomplete(
    ccat_env: Path, tmp_path: Path, make_services,
) -> None:
    """A map batch started, its run was killed, and a new scan arrived before the retry:
    the map's upstream is incomplete again. The retry is not deferred (that left the first
    job unwatched and its row to reconciliation); it re-attaches to the job its first
    attempt started. Another run of the new inputs is deferred as before."""
    spec = pipeline_spec(tmp_path / "processing")
    apply_and_ingest(tmp_path, spec, SCANS)
    services = make_services(LocalBackend(get_settings().jobs_dir, max_parallel=2),
                             HostRuntime(), make_stager)
    calibrated = execute_batch(services, pipeline_name="chai_test", step_name="calibrate",
                               sub_group_keys=KEYS, dagster_run_id="cal")
    assert all(r.outcome is not None for r in calibrated)
    grid_key = subgroup_key(["source", "line"], ["NGC253", "CO43"])

    def claim(run_id: str, chain: list[str]) -> object:
        return claim_runs(services, pipeline_name="chai_test", step_name="grid",
                          sub_group_keys=[grid_key], dagster_run_id=run_id,
                          own_run_ids=chain, defer_incomplete=True)[grid_key]

    first = claim("grid-a", [])
    assert isinstance(first, Claimed) and not first.reattached
    (tmp_path / "later").mkdir()
    apply_and_ingest(tmp_path / "later", spec, [("scan-100", "NGC253", "CO43")])
    retry = claim("grid-a-retry", ["grid-a"])
    assert isinstance(retry, Claimed) and retry.reattached, retry
    assert retry.run_id == first.run_id and retry.fingerprint == first.fingerprint
    other = claim("grid-b", [])
    assert isinstance(other, Deferred) and "upstream not complete" in other.reason


def _run_row_reads(statements: list[str]) -> int:
    """The SELECTs of run rows among ``statements`` (the step lock and planning excluded:
    they read other tables)."""
    return sum(1 for text in statements
               if text.lstrip().upper().startswith("SELECT")
               and "executed_reduction_step" in text.split("FROM", 1)[-1][:200])


def test_claiming_a_batch_reads_its_pairs_rows_once_not_per_member(
    ccat_env: Path, tmp_path: Path, make_services,
) -> None:
    """A claim reads what it must know of each pair's rows (completed, in flight, its
    placeholders, failures) for the whole batch at once: as many reads for six members as
    for two (``ccat_assets/execution/pair_rows.py``)."""
    _setup(tmp_path)
    with session_scope() as session:
        record_queued(session, [QueuedPair("chai_test", "calibrate", key) for key in KEYS],
                      dagster_run_id="queued", trigger_reason="new_data",
                      base_dir=get_settings().pipelines_dir, backend="local", runtime="host")
    services = make_services(LocalBackend(get_settings().jobs_dir, max_parallel=2),
                             HostRuntime(), make_stager)
    reads: list[int] = []
    for keys in (KEYS[:2], KEYS[2:]):
        statements: list[str] = []

        def seen(conn, cursor, statement, *args, sink=statements) -> None:
            sink.append(statement)

        sa.event.listen(sa.engine.Engine, "before_cursor_execute", seen)
        try:
            claimed = claim_runs(services, pipeline_name="chai_test", step_name="calibrate",
                                 sub_group_keys=keys, dagster_run_id="queued",
                                 skip_completed=True)
        finally:
            sa.event.remove(sa.engine.Engine, "before_cursor_execute", seen)
        assert all(isinstance(c, Claimed) and not c.reattached for c in claimed.values())
        reads.append(_run_row_reads(statements))
    assert reads[0] == reads[1], reads
    rows = _rows()  # every placeholder was claimed: no second row
    assert len(rows) == len(KEYS) and {r.dagster_run_id for r in rows} == {"queued"}
    assert all(r.run_dir for r in rows)


def test_a_run_finishing_between_a_claims_reads_is_seen_by_one_of_them(
    ccat_env: Path, tmp_path: Path, make_services, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run that commits COMPLETED while another run claims the same pair is seen by the
    claim, as in flight or as completed, whenever it lands between the claim's reads (a
    finish does not take the step lock). The finish is forced right after the claim's first
    read of the pair's rows and given a second to commit; read completed-first, the claim
    found the pair in neither read and ran it a second time."""
    _setup(tmp_path)
    services = make_services(LocalBackend(get_settings().jobs_dir, max_parallel=2),
                             HostRuntime(), make_stager)
    first = claim_runs(services, pipeline_name="chai_test", step_name="calibrate",
                       sub_group_keys=[KEYS[0]], dagster_run_id="first")[KEYS[0]]
    assert isinstance(first, Claimed) and not first.reattached

    def finish() -> None:
        with session_scope() as session:
            session.execute(sa.update(ExecutedReductionStep)
                            .where(ExecutedReductionStep.id == first.run_id)
                            .values(status=RunStatus.COMPLETED))

    finisher = threading.Thread(target=finish)
    reading = {"inside": False}

    def after_first_pair_read(conn, cursor, statement, *args) -> None:
        if reading["inside"] and finisher.ident is None and _run_row_reads([statement]):
            finisher.start()
            finisher.join(timeout=1.0)  # blocks on the claim's row lock, if it holds one

    def read_inside(*args, **kwargs):
        reading["inside"] = True
        try:
            return read_pair_rows(*args, **kwargs)
        finally:
            reading["inside"] = False

    monkeypatch.setattr(execute_module, "read_pair_rows", read_inside)
    sa.event.listen(sa.engine.Engine, "after_cursor_execute", after_first_pair_read)
    try:
        second = claim_runs(services, pipeline_name="chai_test", step_name="calibrate",
                            sub_group_keys=[KEYS[0]], dagster_run_id="second",
                            skip_completed=True)[KEYS[0]]
    finally:
        sa.event.remove(sa.engine.Engine, "after_cursor_execute", after_first_pair_read)
        finisher.join(timeout=10)
    assert finisher.ident is not None and not finisher.is_alive()
    assert isinstance(second, Busy | Reused), second
    rows = _rows()
    assert [(r.id, r.status) for r in rows] == [(first.run_id, RunStatus.COMPLETED)]


def _stage_two_then_four(tmp_path: Path, make_services) -> list[list[str]]:
    """Claim and stage two members, then the other four, as two batches; the statements
    each staging executed (each batch's staging must succeed)."""
    _setup(tmp_path)
    services = make_services(LocalBackend(get_settings().jobs_dir, max_parallel=6),
                             HostRuntime(), make_stager)
    executed: list[list[str]] = []
    for keys in (KEYS[:2], KEYS[2:]):
        claimed = claim_runs(services, pipeline_name="chai_test", step_name="calibrate",
                             sub_group_keys=keys, dagster_run_id=f"stage-{len(keys)}")
        layouts = {c.run_id: c.layout for c in claimed.values() if isinstance(c, Claimed)}
        statements: list[str] = []

        def seen(conn, cursor, statement, *args, sink=statements) -> None:
            sink.append(statement)

        sa.event.listen(sa.engine.Engine, "before_cursor_execute", seen)
        try:
            staged = stage_runs(services, layouts, f"stage-{len(keys)}")
        finally:
            sa.event.remove(sa.engine.Engine, "before_cursor_execute", seen)
        assert not [r for r in staged.values() if isinstance(r, RunFailed)], staged
        executed.append(statements)
    return executed


def test_staging_a_batch_reads_the_copies_of_its_files_once(
    ccat_env: Path, tmp_path: Path, make_services,
) -> None:
    """The stager learns which of a batch's raw files are staged already, and where each
    package's archive copies are, in one query each for all members (``prefetch``), not one
    per package: as many for four members as for two."""
    counted = []
    for statements in _stage_two_then_four(tmp_path, make_services):
        reads = [r for r in statements if "FROM physical_copy" in r and (
            "raw_data_file_id IN" in r or "physical_copy.raw_data_package_id" in r)]
        counted.append((sum("raw_data_file_id IN" in r for r in reads),
                        sum("raw_data_package_id IN" in r for r in reads), len(reads)))
    assert counted == [(1, 1, 2), (1, 1, 2)], counted


def _run_row_writes(statements: list[str]) -> int:
    """The statements among ``statements`` that write run rows (an executemany is one)."""
    return sum(1 for text in statements
               if text.lstrip().upper().startswith("UPDATE EXECUTED_REDUCTION_STEP"))


def test_staging_a_batch_writes_its_members_rows_in_one_flush(
    ccat_env: Path, tmp_path: Path, make_services,
) -> None:
    """Staging records its members' run rows in one flush at the commit, not one per member:
    as many writes of run rows for four members as for two (one executemany)."""
    writes = [_run_row_writes(s) for s in _stage_two_then_four(tmp_path, make_services)]
    assert writes == [1, 1], writes


def test_a_member_with_a_corrupt_file_fails_staging_alone(
    ccat_env: Path, tmp_path: Path, make_services,
) -> None:
    """A member whose raw file is corrupt fails alone: FAILED, no copy recorded for the
    corrupt file (its good file's copy is, it was staged and verified), its siblings staged
    with all of theirs."""
    _setup(tmp_path)
    corrupt = next((tmp_path / "archive").rglob(f"{SCANS[3][0]}/spec_1.dat"))
    corrupt.write_bytes(b"corrupted after ingest\n")
    services = make_services(LocalBackend(get_settings().jobs_dir, max_parallel=6),
                             HostRuntime(), make_stager)
    claimed = claim_runs(services, pipeline_name="chai_test", step_name="calibrate",
                         sub_group_keys=KEYS, dagster_run_id="corrupt")
    results = stage_runs(services, {c.run_id: c.layout for c in claimed.values()
                                    if isinstance(c, Claimed)}, "corrupt")
    rows = {r.sub_group_key: r for r in _rows()}
    failed = results[rows[KEYS[3]].id]
    assert isinstance(failed, RunFailed) and "does not match" in failed.reason, failed
    assert rows[KEYS[3]].status == RunStatus.FAILED
    others = [k for k in KEYS if k != KEYS[3]]
    assert all(rows[k].status == RunStatus.STAGING_DATA for k in others)
    assert not [k for k in others if isinstance(results[rows[k].id], RunFailed)]
    with session_scope() as session:
        staged = set(session.scalars(
            sa.select(PhysicalCopy.path).join(DataLocation)
            .where(DataLocation.name == "test-processing",
                   PhysicalCopy.raw_data_file_id.is_not(None))))
    scan = SCANS[3][0]
    assert not [p for p in staged if scan in p and p.endswith("spec_1.dat")], sorted(staged)
    assert [p for p in staged if scan in p and p.endswith("spec_0.dat")], sorted(staged)
    assert len(staged) == 2 * len(KEYS) - 1, sorted(staged)


def _ended_members(services, keys: list[str]) -> dict[str, JobEnded]:
    """Claim, stage and run ``keys`` of calibrate as one array to the end, unfinished."""
    claimed = claim_runs(services, pipeline_name="chai_test", step_name="calibrate",
                         sub_group_keys=keys, dagster_run_id="finish-test")
    members = {key: c for key, c in claimed.items() if isinstance(c, Claimed)}
    specs = stage_runs(services, {m.run_id: m.layout for m in members.values()}, "finish-test")
    job_ids = submit_array(services.backend, "finish-test", list(specs.values()), None)
    by_job = dict(zip(job_ids, members, strict=True))
    record_submission(services, {members[key].run_id: job for job, key in by_job.items()})
    statuses = [s for ended in wait_jobs(services, {job: members[key].run_id
                                                    for job, key in by_job.items()})
                for s in ended]
    return {by_job[s.job_id]: JobEnded(members[by_job[s.job_id]].run_id,
                                       members[by_job[s.job_id]].layout, s, False)
            for s in statuses}


def test_a_poll_finishes_its_ended_members_in_two_transactions_not_two_each(
    ccat_env: Path, tmp_path: Path, make_services,
) -> None:
    """Members a poll found ended are finished together: for two members as for four, two
    commits, one read of what they consumed (raw packages, upstream products) and one
    insert each of their products and of their lineage (``finish_runs``)."""
    _setup(tmp_path)
    services = make_services(LocalBackend(get_settings().jobs_dir, max_parallel=6),
                             HostRuntime(), make_stager)
    ended = _ended_members(services, KEYS)
    counted: list[tuple[int, int]] = []
    for keys in (KEYS[:2], KEYS[2:]):
        commits: list[int] = []
        reads: list[str] = []

        def committed(conn, sink=commits) -> None:
            sink.append(1)

        def seen(conn, cursor, statement, *args, sink=reads) -> None:
            if ("row_number() OVER" in statement  # what a run consumed, first rows of each
                    or statement.startswith(("INSERT INTO data_product ",
                                             "INSERT INTO data_product_lineage "))):
                sink.append(statement)

        sa.event.listen(sa.engine.Engine, "commit", committed)
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", seen)
        try:
            finished = finish_runs(services, [ended[key] for key in keys], is_final=False)
        finally:
            sa.event.remove(sa.engine.Engine, "commit", committed)
            sa.event.remove(sa.engine.Engine, "before_cursor_execute", seen)
        assert all(isinstance(f, RunOutcome) and f.status == RunStatus.COMPLETED
                   and f.n_raw_packages == 1 for f in finished.values()), finished
        counted.append((len(commits), len(reads)))
    assert counted[0] == counted[1] == (2, 4), counted


def test_the_checks_of_members_finished_together_read_the_ops_db_once_for_all(
    ccat_env: Path, tmp_path: Path, make_services,
) -> None:
    """A batch judges the members a poll finished together: the step's checks issue as
    many statements for four members as for two, and every member passes them."""
    _setup(tmp_path)
    services = make_services(LocalBackend(get_settings().jobs_dir, max_parallel=6),
                             HostRuntime(), make_stager)
    ended = _ended_members(services, KEYS)
    finished = finish_runs(services, list(ended.values()), is_final=False)
    run_ids = [ended[key].run_id for key in KEYS]
    counted: list[int] = []
    for ids in (run_ids[:2], run_ids[2:]):
        statements: list[str] = []

        def seen(conn, cursor, statement, *args, sink=statements) -> None:
            sink.append(statement)

        sa.event.listen(sa.engine.Engine, "before_cursor_execute", seen)
        try:
            with session_scope() as session:
                judged = judge_runs(session, ids, {FILES, QUALITY})
        finally:
            sa.event.remove(sa.engine.Engine, "before_cursor_execute", seen)
        assert sorted(judged) == sorted(ids)
        for run_id, checks in judged.items():  # every product file hashed again, matching
            assert checks[FILES]["passed"] and checks[QUALITY]["passed"], checks
            assert checks[FILES]["metadata"]["verified"] == (
                _products(run_id) + _products(run_id, logs=True)) > 0, checks
        counted.append(len(statements))
    assert counted[0] == counted[1], counted
    assert all(isinstance(f, RunOutcome) for f in finished.values())


def test_a_member_that_cannot_be_collected_fails_alone_among_those_finished_together(
    ccat_env: Path, tmp_path: Path, make_services,
) -> None:
    """Each member is collected in its own savepoint: finished as a final step, the members
    that wrote no SCIENCE product fail with the reason, the one that did is COMPLETED with
    its product, in the same call."""
    _setup(tmp_path)
    services = make_services(LocalBackend(get_settings().jobs_dir, max_parallel=6),
                             HostRuntime(), make_stager)
    ended = _ended_members(services, KEYS[:3])
    good = ended[KEYS[1]]
    science = good.layout.output_dir / "science" / "map.fits"
    science.parent.mkdir(parents=True, exist_ok=True)
    science.write_bytes(b"SIMPLE")
    finished = finish_runs(services, list(ended.values()), is_final=True)
    outcome = finished[good.run_id]
    assert isinstance(outcome, RunOutcome) and outcome.status == RunStatus.COMPLETED
    assert [p["path"] for p in outcome.products if p["type"] == "SCIENCE"] == [
        "output/science/map.fits"], outcome.products
    for key in (KEYS[0], KEYS[2]):
        failed = finished[ended[key].run_id]
        assert isinstance(failed, RunFailed), failed
        assert "final step wrote no SCIENCE product" in failed.reason
    rows = {r.id: r for r in _rows()}
    assert RunStatus(rows[good.run_id].status) == RunStatus.COMPLETED
    assert {RunStatus(rows[ended[key].run_id].status) for key in (KEYS[0], KEYS[2])} == {
        RunStatus.FAILED}
    assert _products(good.run_id) == 1


@pytest.mark.integration
def test_slurm_batch_is_one_sbatch_array_with_throttle(
    ccat_env: Path, tmp_path: Path, slurm_target: SSHTarget, slurm_settings_env: None,
    make_services,
) -> None:
    spec = pipeline_spec(tmp_path / "processing", extra_step_params={"fail_sub_group": KEYS[1]})
    spec["locations"][0]["host"] = f"{slurm_target.user}@{slurm_target.host}:{slurm_target.port}"
    apply_and_ingest(tmp_path, spec, SCANS)
    backend = SlurmBackend.from_settings(get_settings())
    calls: list[list[str]] = []
    run = backend.ssh.run

    def spy(argv, **kwargs):
        calls.append(list(argv))
        return run(argv, **kwargs)

    backend.ssh.run = spy  # type: ignore[method-assign]
    services = make_services(backend, HostRuntime(), make_stager)

    results = execute_batch(services, pipeline_name="chai_test", step_name="calibrate",
                            sub_group_keys=KEYS, dagster_run_id="slurm-batch", max_parallel=2)

    sbatches = [c for c in calls if c[0] == "sbatch"]
    assert len(sbatches) == 1 and "--array=0-5%2" in sbatches[0]
    assert [r.key for r in results if r.failed] == [KEYS[1]]
    done = [r.outcome for r in results if r.outcome is not None]
    assert len(done) == 5
    array_id = {o.job_id.split("_")[0] for o in done}
    assert len(array_id) == 1
    assert sorted(o.job_id for o in done) == sorted(
        f"{next(iter(array_id))}_{i}" for i in (0, 2, 3, 4, 5))
    assert all(o.metrics["exit_code"] == 0 and o.metrics["processing_time_s"] is not None
               for o in done)
    rows = {r.sub_group_key: r for r in _rows()}
    assert rows[KEYS[1]].status == RunStatus.FAILED and "exit code 3" in (
        rows[KEYS[1]].error_message or "")
    # each member's program wrote into its own logs, not into the array's output
    for outcome in done:
        stdout = Path(outcome.run_dir) / "logs" / "stdout.log"
        assert stdout.exists()
