"""Switching a step's version policy or pin, on both databases.

A switch reprocesses exactly the pairs whose last completed run used a version the new policy
does not accept (``exact``: another version; ``compatible``: another major), with reason
``version_changed``, and ``details.changed`` names only what changed. The executor agrees:
a pair gap evaluation calls up to date is re-reported when it is materialized, not run again,
and ``ccat-wm check`` stays clean.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from ccat_assets.automation.inputs import plan_inputs
from ccat_assets.consistency.snapshot import check_pipelines
from ccat_assets.dagster_face.catalog import load_catalog
from ccat_assets.definitions import load_definitions
from ccat_assets.execution.execute import Claimed, Reused, claim_run
from ccat_assets.opsdb import ExecutedReductionStep, RawDataPackage, RunStatus
from ccat_assets.opsdb.session import session_scope
from ccat_assets.settings import get_settings
from sensors.partitions import sync_partitions
from tests.factories import pipeline_spec
from tests.gaps.gapkit import PIPELINE, add_run, apply_versions, ccat, ingest, materialize, scan_key
from tests.reliability.conftest import local_services

KEY = scan_key("scan-001")
OTHER = scan_key("scan-002")
SCANS = [("scan-001", "NGC253", "CO43"), ("scan-002", "NGC253", "CO43")]
COMPATIBLE: dict[str, Any] = {"version_policy": "compatible"}


def exact(version: str) -> dict[str, Any]:
    return {"version_policy": "exact", "pinned_version": version}


def new_config(tmp_path: Path) -> dict[str, Any]:
    config = pipeline_spec(tmp_path / "processing")["pipelines"][0]["steps"][0]["config"]
    return {"config": {**config, "parameters": {"tag": "v2"}}}


def gaps(key: str = KEY) -> dict[str, Any]:
    """The calibrate decision for ``key`` as ``ccat-wm gaps --json`` shows it."""
    rows = json.loads(ccat("gaps", PIPELINE, "--json", "--all"))
    return next(r for r in rows if r["step"] == "calibrate" and r["key"] == key)


def complete(key: str = KEY) -> int:
    """A COMPLETED run of calibrate for ``key`` with the inputs, config and version of now,
    written as the executor writes it."""
    with session_scope() as session:
        fingerprint = plan_inputs(session, PIPELINE, "calibrate", key,
                                  get_settings().pipelines_dir).fingerprint
    return add_run("calibrate", key, RunStatus.COMPLETED, input_fingerprint=fingerprint)


def rearchive(scan: str) -> None:
    """A package of ``scan`` archived again with other content: its checksum changes."""
    with session_scope() as session:
        package = session.scalar(sa.select(RawDataPackage)
                                 .where(RawDataPackage.name.contains(scan)))
        package.checksum = "sha256:" + "f" * 64


def executor_reuses(key: str = KEY) -> bool:
    """Whether a materialization of the pair now re-reports a completed run."""
    claimed = claim_run(local_services(), pipeline_name=PIPELINE, step_name="calibrate",
                        sub_group_key=key, dagster_run_id=None, skip_completed=True)
    assert isinstance(claimed, Reused | Claimed)
    return isinstance(claimed, Reused)


def executor_fingerprint(key: str = KEY) -> str:
    with session_scope() as session:
        return plan_inputs(session, PIPELINE, "calibrate", key,
                           get_settings().pipelines_dir).fingerprint


V1, V11, V13, V2 = ["1.0.0"], ["1.0.0", "1.1.0"], ["1.0.0", "1.3.0"], ["1.0.0", "2.0.0"]
UP_TO_DATE = ("wait", "up_to_date", None)

# (case, versions and calibrate before, versions and calibrate after, inputs changed,
#  expected (decision, reason, details.changed))
CASES: list[tuple[str, tuple, tuple, bool, tuple[str, str, list[str] | None]]] = [
    ("compatible -> exact, same version", (V1, COMPATIBLE), (V1, exact("1.0.0")), False,
     UP_TO_DATE),
    ("compatible -> exact, new version", (V1, COMPATIBLE), (V11, exact("1.1.0")), False,
     ("fire", "version_changed", ["version"])),
    ("exact -> exact, new pin", (V11, exact("1.0.0")), (V11, exact("1.1.0")), False,
     ("fire", "version_changed", ["version"])),
    ("exact -> compatible, same major", (V13, exact("1.0.0")), (V13, COMPATIBLE), False,
     UP_TO_DATE),
    ("exact -> compatible, new major", (V2, exact("1.0.0")), (V2, COMPATIBLE), False,
     ("fire", "version_changed", ["version"])),
    ("new minor release under compatible", (V1, COMPATIBLE), (V11, COMPATIBLE), False,
     UP_TO_DATE),
    ("new major release under compatible", (V1, COMPATIBLE), (V2, COMPATIBLE), False,
     ("fire", "version_changed", ["version"])),
    ("compatible -> exact, same version, new input", (V1, COMPATIBLE), (V1, exact("1.0.0")),
     True, ("fire", "inputs_changed", ["inputs"])),
    ("compatible -> exact, new version, new input", (V1, COMPATIBLE), (V11, exact("1.1.0")),
     True, ("fire", "version_changed", ["version", "inputs"])),
    ("exact -> compatible, same major, new input", (V13, exact("1.0.0")), (V13, COMPATIBLE),
     True, ("fire", "inputs_changed", ["inputs"])),
]


@pytest.mark.parametrize(("before", "after", "new_input", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_switch_names_only_what_changed(
        served_env: Path, tmp_path: Path, before: tuple[Sequence[str], dict[str, Any]],
        after: tuple[Sequence[str], dict[str, Any]], new_input: bool,
        expected: tuple[str, str, list[str] | None]) -> None:
    apply_versions(tmp_path, before[0], **before[1])
    ingest(tmp_path, SCANS[:1])
    complete()
    assert gaps()["reason"] == "up_to_date"
    apply_versions(tmp_path, after[0], **after[1])
    if new_input:
        rearchive("scan-001")
    row = gaps()
    assert (row["decision"], row["reason"], row["details"].get("changed")) == expected
    assert executor_reuses() == (row["reason"] == "up_to_date")
    if row["decision"] == "fire":
        assert row["fingerprint"] == executor_fingerprint()


def test_config_change_with_a_policy_switch_is_a_config_change(
        served_env: Path, tmp_path: Path) -> None:
    apply_versions(tmp_path, V1, **COMPATIBLE)
    ingest(tmp_path, SCANS[:1])
    complete()
    apply_versions(tmp_path, V1, **exact("1.0.0"), **new_config(tmp_path))
    row = gaps()
    assert (row["reason"], row["details"]["changed"]) == ("config_changed", ["config"])


def test_a_switch_reprocesses_exactly_the_pairs_built_with_a_refused_version(
        served_env: Path, tmp_path: Path) -> None:
    apply_versions(tmp_path, V1, **COMPATIBLE)
    ingest(tmp_path, SCANS)
    complete(KEY)  # with 1.0.0
    apply_versions(tmp_path, V11, **COMPATIBLE)
    complete(OTHER)  # with 1.1.0, the latest now
    assert {gaps(k)["reason"] for k in (KEY, OTHER)} == {"up_to_date"}

    apply_versions(tmp_path, V11, **exact("1.1.0"))
    assert (gaps(KEY)["reason"], gaps(OTHER)["reason"]) == ("version_changed", "up_to_date")
    apply_versions(tmp_path, V11, **exact("1.0.0"))
    assert (gaps(KEY)["reason"], gaps(OTHER)["reason"]) == ("up_to_date", "version_changed")


def calibrate_rows() -> list[tuple[int, RunStatus]]:
    with session_scope() as session:
        return [(r.id, RunStatus(r.status)) for r in session.scalars(
            sa.select(ExecutedReductionStep).order_by(ExecutedReductionStep.id))]


def disagreements(instance: dg.DagsterInstance) -> list[tuple[str, str, str | None]]:
    """What ``ccat-wm check`` finds, every sub-group registered as a partition first."""
    with session_scope() as session:
        sync_partitions(instance, session, load_catalog(session))
        return [(f.kind, f.step, f.key) for f in check_pipelines(instance, session, [PIPELINE])]


def test_materializing_after_a_switch_re_reports_the_completed_run(
        served_env: Path, tmp_path: Path) -> None:
    apply_versions(tmp_path, V1, trigger={"type": "MANUAL"}, **COMPATIBLE)
    ingest(tmp_path, SCANS[:1])
    asset = dg.AssetKey(["ccat", PIPELINE, "calibrate"])
    with dg.instance_for_test() as instance:
        assert materialize(load_definitions(), instance, "calibrate", KEY).success
        (done,) = calibrate_rows()
        apply_versions(tmp_path, V1, trigger={"type": "MANUAL"}, **exact("1.0.0"))
        assert gaps()["reason"] == "up_to_date"

        again = materialize(load_definitions(), instance, "calibrate", KEY)
        assert again.success
        assert calibrate_rows() == [done]
        latest = instance.get_latest_materialization_event(asset)
        assert latest is not None and latest.run_id == again.run_id
        assert "Nothing ran" in latest.asset_materialization.metadata["reused_run"].value
        assert disagreements(instance) == []

        apply_versions(tmp_path, V11, trigger={"type": "MANUAL"}, **exact("1.1.0"))
        assert gaps()["reason"] == "version_changed"
        assert materialize(load_definitions(), instance, "calibrate", KEY).success
        assert [status for _, status in calibrate_rows()] == [RunStatus.COMPLETED] * 2
        assert gaps()["reason"] == "up_to_date"
        assert disagreements(instance) == []
