"""A batch run's Dagster log speaks per member: each member's own output lines under its run
and sub-group, the batch's progress (k of N done) when it changes, and the run's failure
carries the failed member's exit code and last stderr lines. Real Dagster instance, local
backend, both databases."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg

from ccat_assets.dagster_face.batch_job import batch_job_name, batch_op_name
from ccat_assets.definitions import load_definitions
from ccat_assets.grouping import subgroup_key
from tests.execution.conftest import apply_and_ingest
from tests.factories import chatty_spec

SCANS = [(f"scan-{i:03d}", "NGC253", "CO43") for i in range(3)]
KEYS = [subgroup_key(["executed_obs_unit"], [scan]) for scan, _, _ in SCANS]
HEADER = re.compile(r"run \d+ \(.+\) (stdout|stderr):")


def _sections(messages: list[str]) -> list[tuple[str, list[str]]]:
    """The output sections of the log's messages (several members may share a message)."""
    out: list[tuple[str, list[str]]] = []
    for message in messages:
        current: list[str] | None = None
        for line in message.splitlines():
            if HEADER.fullmatch(line):
                current = []
                out.append((line, current))
            elif current is not None:
                current.append(line)
    return out


def test_a_batch_logs_each_members_output_and_progress(ccat_env: Path, tmp_path: Path) -> None:
    spec = chatty_spec(tmp_path / "processing", stdout_lines=2, stderr_lines=4,
                       fail_sub_group=KEYS[1])
    spec["pipelines"][0]["steps"][0]["batch_size"] = 10
    apply_and_ingest(tmp_path, spec, SCANS)
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("chai_test__executed_obs_unit", KEYS)
        result = defs.resolve_job_def(batch_job_name("chai_test", "calibrate")).execute_in_process(
            instance=instance, raise_on_error=False,
            run_config={"ops": {batch_op_name("chai_test", "calibrate"):
                                {"config": {"sub_groups": KEYS}}}})
        messages = [e.user_message for e in instance.all_logs(result.run_id)]

    sections = _sections(messages)
    for key in KEYS:  # each member's lines, under its own label, once
        own = [lines for header, lines in sections if header.endswith(f"({key}) stdout:")]
        assert own == [[f"chatty says {i} ({key})" for i in range(2)]], (key, messages)
    assert not any(f"chatty error 0 ({key})" in m for key in (KEYS[0], KEYS[2])
                   for m in messages)
    progress = [m for m in messages if m.startswith("batch: ")]
    assert progress[-1] == "batch: 3 of 3 jobs done, 0 running, 0 pending"
    assert len(progress) == len(set(progress))  # on change only

    assert not result.success
    failure = result.failure_data_for_node(
        batch_op_name("chai_test", "calibrate")).user_failure_data
    assert failure.description.startswith("1 of 3 sub-groups failed:\n")
    assert f"{KEYS[1]}: exit code 3\nlast 4 lines of stderr:\n" in failure.description
    assert json.loads(json.dumps(failure.metadata["last lines"].value)) == {
        KEYS[1]: [f"chatty error {i} ({KEYS[1]})" for i in range(4)]}
    assert failure.metadata["exit_codes"].value == {KEYS[1]: 3}
    # the member's own failed-materialization line says the same
    assert any(m.startswith(f"calibrate/{KEYS[1]}: exit code 3\nlast 4 lines") for m in messages)
