"""A reduction program that fails, half-succeeds or writes nothing, run for real on the local
backend (host runtime), on both databases. Each case ends FAILED with its reason, keeps the
program's logs as LOG products and records none of its partial outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccat_assets.execution.execute import RunFailed, execute_partition
from ccat_assets.opsdb import RunStatus
from tests.reliability.conftest import (
    KEY,
    PIPELINE,
    STEP,
    assert_no_live_in_flight_rows,
    local_services,
    product_paths,
    product_types,
    runs,
)


def _run_expecting_failure() -> RunFailed:
    with pytest.raises(RunFailed) as caught:
        execute_partition(local_services(), pipeline_name=PIPELINE, step_name=STEP,
                          sub_group_key=KEY, dagster_run_id="d-1")
    return caught.value


@pytest.mark.parametrize(("params", "reason"), [
    ({"exit_code": 3}, "exit code 3"),
    ({"n_files": 3, "exit_code": 5}, "exit code 5"),  # partial outputs, then failure
    ({"write_nothing": True, "exit_code": 7}, "exit code 7"),
])
def test_failing_program_is_failed_and_keeps_only_logs(make_pipeline, params, reason) -> None:
    """Non-zero exit: FAILED with the exit code; science files it left are not products."""
    root = make_pipeline(params)
    failed = _run_expecting_failure()
    assert failed.status == RunStatus.FAILED and reason in failed.reason
    [run] = runs()
    assert run.status == RunStatus.FAILED and run.exit_code == params["exit_code"]
    assert reason in run.error_message and run.finished_at is not None
    assert set(product_types(run.id)) == {"LOG"}
    assert "logs/program.log" in product_paths(run.id)
    if params.get("n_files"):  # the partial outputs are on disk, but not recorded
        science = Path(run.run_dir) / "output" / "science"
        assert len(list(science.glob("part-*.txt"))) == params["n_files"]
    assert Path(run.run_dir).is_relative_to(root)
    assert_no_live_in_flight_rows()


def test_final_step_that_writes_nothing_fails_naming_the_missing_science(make_pipeline) -> None:
    """Exit 0 without output: a final step must write a SCIENCE product, or it fails."""
    make_pipeline({"write_nothing": True})
    failed = _run_expecting_failure()
    assert "no SCIENCE product" in failed.reason
    [run] = runs()
    assert run.status == RunStatus.FAILED and run.exit_code == 0
    assert "no SCIENCE product" in run.error_message
    assert set(product_types(run.id)) == {"LOG"}
    assert_no_live_in_flight_rows()
