"""The batch job in Dagster: one run, each member its own partition materialization with the
single-run metadata and checks; a failed member is the only partition marked failed; the
retried run reruns only that member. Real Dagster instance, local backend, both databases."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.definitions.data_version import StaleStatus
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

from ccat_assets.dagster_face.batch_job import batch_job_name, batch_op_name
from ccat_assets.definitions import load_definitions
from ccat_assets.grouping import subgroup_key
from ccat_assets.opsdb import ExecutedReductionStep, RunStatus
from ccat_assets.opsdb.session import session_scope
from tests.execution.conftest import apply_and_ingest
from tests.factories import pipeline_spec, write_spec
from tests.gaps.gapkit import CODE_CAUSE, ccat, staleness

SCANS = [(f"scan-{i:03d}", "NGC253", "CO43") for i in range(4)]
KEYS = [subgroup_key(["executed_obs_unit"], [scan]) for scan, _, _ in SCANS]
ASSET = dg.AssetKey(["ccat", "chai_test", "calibrate"])
PARTITIONS = "chai_test__executed_obs_unit"


@pytest.fixture
def batched(ccat_env: Path, tmp_path: Path) -> Path:
    spec = pipeline_spec(tmp_path / "processing", extra_step_params={"fail_sub_group": KEYS[1]})
    spec["pipelines"][0]["steps"][0]["batch_size"] = 50
    apply_and_ingest(tmp_path, spec, SCANS)
    return tmp_path


def _run_batch(defs: dg.Definitions, instance: dg.DagsterInstance, keys: list[str],
               **kwargs) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(batch_job_name("chai_test", "calibrate"))
    return job.execute_in_process(
        instance=instance, raise_on_error=False,
        run_config={"ops": {batch_op_name("chai_test", "calibrate"):
                            {"config": {"sub_groups": keys}}}}, **kwargs)


def _failed_partitions(instance: dg.DagsterInstance, defs: dg.Definitions) -> set[str]:
    partitions_def = defs.resolve_assets_def(ASSET).partitions_def
    value = get_and_update_asset_status_cache_value(instance, ASSET, partitions_def)
    return set(value.deserialize_failed_partition_subsets(partitions_def).get_partition_keys())


def test_batch_run_materializes_each_member_and_fails_only_the_failed_one(batched: Path) -> None:
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(PARTITIONS, KEYS)
        result = _run_batch(defs, instance, KEYS)

        assert not result.success  # a member failed, so the run did
        materialized = instance.get_materialized_partitions(ASSET)
        assert materialized == set(KEYS) - {KEYS[1]}
        assert _failed_partitions(instance, defs) == {KEYS[1]}
        event = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=ASSET, asset_partitions=[KEYS[0]]), limit=1
        ).records[0].asset_materialization
        assert event.metadata["sub_group"].value == KEYS[0]
        assert event.metadata["raw_packages"].value == 1
        assert event.tags["dagster/data_version"].startswith("sha256:")
        checks = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(ASSET, "files_match_checksums"), limit=10)
        assert {c.event.asset_check_evaluation.partition for c in checks
                if c.event is not None} == set(KEYS) - {KEYS[1]}
        failure = result.failure_data_for_node(batch_op_name("chai_test", "calibrate"))
        assert KEYS[1] in failure.user_failure_data.description
        assert failure.user_failure_data.metadata["exit_codes"].value == {KEYS[1]: 3}
        assert isinstance(event.metadata["exit_code"], dg.IntMetadataValue)

        # Dagster's retry of the run (same config, parent run): only the failed member runs
        retry = _run_batch(defs, instance, KEYS, tags={"dagster/parent_run_id": result.run_id})
        assert not retry.success
        with session_scope() as session:
            rows = list(session.execute(sa.select(ExecutedReductionStep.sub_group_key,
                                                  ExecutedReductionStep.status)))
        assert sorted(k for k, s in rows if s == RunStatus.COMPLETED) == sorted(
            set(KEYS) - {KEYS[1]})
        assert [k for k, s in rows if s == RunStatus.FAILED] == [KEYS[1], KEYS[1]]
        assert len(rows) == len(KEYS) + 1


def test_batch_job_exists_only_for_batched_steps(batched: Path) -> None:
    defs = load_definitions()
    defs.get_repository_def().load_all_definitions()  # what a code server does: all valid
    assert defs.resolve_job_def(batch_job_name("chai_test", "calibrate"))
    with pytest.raises(Exception, match="grid__batch"):
        defs.resolve_job_def(batch_job_name("chai_test", "grid"))


@pytest.fixture
def both_batched(ccat_env: Path, tmp_path: Path) -> dict:
    """Both steps batched, every member succeeds; returns the spec for re-applying."""
    spec = pipeline_spec(tmp_path / "processing")
    for step in spec["pipelines"][0]["steps"]:
        step["batch_size"] = 50
    apply_and_ingest(tmp_path, spec, SCANS)
    return spec


def _run_batch_of(defs: dg.Definitions, instance: dg.DagsterInstance, step: str,
                  keys: list[str]) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(batch_job_name("chai_test", step))
    return job.execute_in_process(
        instance=instance, run_config={"ops": {batch_op_name("chai_test", step):
                                               {"config": {"sub_groups": keys}}}})


def _latest_tags(instance: dg.DagsterInstance, asset: dg.AssetKey, key: str) -> dict[str, str]:
    return dict(instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[key]), limit=1
    ).records[0].asset_materialization.tags)


def test_batch_members_carry_an_asset_runs_provenance_so_staleness_is_judged_alike(
        both_batched: dict, tmp_path: Path) -> None:
    grid = dg.AssetKey(["ccat", "chai_test", "grid"])
    map_key = subgroup_key(["source", "line"], ["NGC253", "CO43"])
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(PARTITIONS, KEYS)
        instance.add_dynamic_partitions("chai_test__source+line", [map_key])
        defs = load_definitions()
        assert _run_batch_of(defs, instance, "calibrate", KEYS[:3]).success
        single = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, partition_key=KEYS[3], asset_selection=[ASSET])
        assert single.success
        assert _run_batch_of(defs, instance, "grid", [map_key]).success

        # the tags of a batch member are those of an asset run, data version aside
        batch, asset_run = _latest_tags(instance, ASSET, KEYS[0]), _latest_tags(
            instance, ASSET, KEYS[3])
        assert set(batch) == set(asset_run)
        assert {k: v for k, v in batch.items() if k != "dagster/data_version"} == {
            k: v for k, v in asset_run.items() if k != "dagster/data_version"}
        assert batch["dagster/code_version"].startswith("major:1 config:")
        partitions = [(ASSET, k) for k in KEYS] + [(grid, map_key)]
        assert {v for v in staleness(defs, instance, partitions).values()
                if v != (StaleStatus.FRESH, set())} == set()

        # a new config marks every scan, batch member or not, by its code version only
        both_batched["pipelines"][0]["steps"][0]["config"]["parameters"]["tag"] = "v2"
        ccat("apply", "--no-reload", str(write_spec(tmp_path / "pipeline.yaml", both_batched)))
        defs = load_definitions()
        found = staleness(defs, instance, partitions)
        assert [found[(ASSET, k)] for k in KEYS] == [(StaleStatus.STALE, {CODE_CAUSE})] * 4
        assert found[(grid, map_key)] == (StaleStatus.FRESH, set())

        # a scan reduced anew in a batch: in sync, and the map is marked by its new data
        assert _run_batch_of(defs, instance, "calibrate", KEYS[:1]).success
        found = staleness(defs, instance, partitions)
        assert found[(ASSET, KEYS[0])] == (StaleStatus.FRESH, set())
        assert found[(grid, map_key)][0] == StaleStatus.STALE
        assert {(c[0].value, c[2]) for c in found[(grid, map_key)][1]} == {("DATA", KEYS[0])}


def test_a_gap_launched_map_whose_upstream_grew_defers_and_a_persons_fails(
        both_batched: dict) -> None:
    """New scans arrived between the gap sensor's launch and the run's claim: the map's
    upstream is incomplete. Launched by the gap sensor, the run succeeds with the member
    neither materialized nor failed (it is launched again); launched by a person, it fails
    with the reason."""
    grid = dg.AssetKey(["ccat", "chai_test", "grid"])
    map_key = subgroup_key(["source", "line"], ["NGC253", "CO43"])
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("chai_test__source+line", [map_key])
        defs = load_definitions()
        job = defs.resolve_job_def(batch_job_name("chai_test", "grid"))
        run_config = {"ops": {batch_op_name("chai_test", "grid"):
                              {"config": {"sub_groups": [map_key]}}}}
        by_sensor = job.execute_in_process(instance=instance, run_config=run_config,
                                           tags={"ccat/reason": "new_data"})
        assert by_sensor.success
        assert instance.get_materialized_partitions(grid) == set()
        warnings = [e.message for e in instance.all_logs(by_sensor.run_id)
                    if e.level == 30 and "deferred" in e.message]
        assert warnings and "upstream not complete" in warnings[0]

        by_person = job.execute_in_process(instance=instance, run_config=run_config,
                                           raise_on_error=False)
        assert not by_person.success
        failure = by_person.failure_data_for_node(batch_op_name("chai_test", "grid"))
        assert "upstream not complete" in failure.user_failure_data.description
        with session_scope() as session:
            rows = session.scalar(sa.select(sa.func.count()).select_from(ExecutedReductionStep))
        assert rows == 0  # neither wrote an attempt: the upstream was never complete
