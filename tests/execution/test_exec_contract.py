"""The container contract for real: manifests of real runs validate against the published
JSON Schema, and a program run inside bubblewrap (a real stand-in for Apptainer, which
cannot be installed here) with exactly the binds and environment of the ``apptainer exec``
argv sees the ``/workflow`` layout, reads its inputs and cannot change them or its config."""

from __future__ import annotations

import copy
import json
import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema

from ccat_assets.execution.execute import execute_partition
from ccat_assets.grouping import subgroup_key
from ccat_assets.opsdb.enums import DataProductType
from ccat_assets.settings import get_settings
from resources.apptainer import HostRuntime
from resources.backends.local import LocalBackend
from resources.staging import make_stager
from tests.conftest import require_service
from tests.execution.bwrap_stand_in import BwrapStandInRuntime
from tests.execution.conftest import apply_and_ingest
from tests.factories import pipeline_spec

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "ccat_assets" / "schemas"
                     / "manifest.schema.json").read_text())
SCANS = [("scan-001", "NGC253", "CO43"), ("scan-002", "NGC253", "CO43")]


def errors(manifest: dict[str, Any]) -> list[str]:
    """Every violation of the published manifest schema, as ``path: problem``."""
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
            for e in validator.iter_errors(manifest)]


def _manifest(run_dir: str) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "config" / "manifest.json").read_text())


def _local(services_factory):
    return services_factory(LocalBackend(get_settings().jobs_dir), HostRuntime(), make_stager)


def test_manifests_of_real_runs_match_the_schema(ccat_env: Path, tmp_path: Path,
                                                 make_services) -> None:
    apply_and_ingest(tmp_path, pipeline_spec(tmp_path / "processing"), SCANS)
    services = _local(make_services)
    first = [execute_partition(services, pipeline_name="chai_test", step_name="calibrate",
                               sub_group_key=subgroup_key(["executed_obs_unit"], [scan]),
                               dagster_run_id=None) for scan, _, _ in SCANS]
    final = execute_partition(services, pipeline_name="chai_test", step_name="grid",
                              sub_group_key=subgroup_key(["source", "line"], ["NGC253", "CO43"]),
                              dagster_run_id="4f3c2a")
    manifests = [_manifest(o.run_dir) for o in (*first, final)]
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    for manifest in manifests:
        assert errors(manifest) == []
    assert len(manifests[-1]["inputs"]["products"]) == 4  # the grid step read 4 products
    assert manifests[-1]["step"]["is_final"] is True


def test_schema_check_rejects_what_the_schema_forbids(ccat_env: Path, tmp_path: Path,
                                                      make_services) -> None:
    apply_and_ingest(tmp_path, pipeline_spec(tmp_path / "processing"), SCANS[:1])
    outcome = execute_partition(_local(make_services), pipeline_name="chai_test",
                                step_name="calibrate", dagster_run_id=None,
                                sub_group_key=subgroup_key(["executed_obs_unit"], ["scan-001"]))
    good = _manifest(outcome.run_dir)
    assert errors(good) == []
    broken = []
    for mutate in (lambda m: m.pop("output_dir"), lambda m: m.update(surprise=1),
                   lambda m: m["run"].update(id="7"),
                   lambda m: m["inputs"]["raw_data_packages"][0]["files"][0].update(
                       checksum="md5:abc"),
                   lambda m: m["step"].update(group_by="executed_obs_unit"),
                   lambda m: m.update(schema_version=2)):
        bad = copy.deepcopy(good)
        mutate(bad)
        broken.append(errors(bad))
    assert all(broken), broken


def test_contract_layout_and_read_only_mounts_in_a_bubblewrap_stand_in(
    ccat_env: Path, tmp_path: Path, make_services,
) -> None:
    require_service(shutil.which("bwrap") is not None,
                    "bubblewrap (installed by scripts/services/install.sh)")
    pwned = f"/tmp/pwned-{uuid.uuid4().hex[:10]}"
    tricky = f"x=1,y=2 \"q\" $(touch {pwned}) `id`"
    spec = pipeline_spec(tmp_path / "processing")
    config = spec["pipelines"][0]["steps"][0]["config"]
    config["command"] = ["/usr/bin/python3", "/opt/ccat/contract_probe.py"]
    config["environment"] = {"TRICKY": tricky, "PLAIN": "simple"}
    apply_and_ingest(tmp_path, spec, SCANS[:1])
    runtime = BwrapStandInRuntime(tmp_path / "sif-cache")
    services = make_services(LocalBackend(get_settings().jobs_dir), runtime, make_stager)
    outcome = execute_partition(services, pipeline_name="chai_test", step_name="calibrate",
                                sub_group_key=subgroup_key(["executed_obs_unit"], ["scan-001"]),
                                dagster_run_id=None)
    run_dir = Path(outcome.run_dir)
    report = json.loads((run_dir / "workspace/calibrate/science/probe.json").read_text())
    # the program saw only the contract's layout, at the contract's paths
    assert report["workflow"] == ["config", "input", "logs", "output", "workspace"]
    assert "work" not in report["root"] and "opt" in report["root"]
    assert report["cwd"] == "/workflow/workspace/calibrate"
    env = report["env"]
    assert env["WORKFLOW_OUTPUT_DIR"] == "/workflow/workspace/calibrate"
    assert env["WORKFLOW_MANIFEST"] == "/workflow/config/manifest.json"
    assert env["TRICKY"] == tricky and env["PLAIN"] == "simple"  # APPTAINERENV_ and --env
    assert not Path(pwned).exists()
    assert "HOME" not in env or env["HOME"] != str(Path.home())  # nothing from the host
    # inputs readable and intact; input and config read-only; logs writable
    assert report["checksums_ok"] is True
    assert report["create_in_input"] == report["modify_input"] == "EROFS"
    assert report["create_in_config"] == report["modify_manifest"] == "EROFS"
    assert report["write_logs"] == "allowed"
    # the manifest the program read holds container paths, and matches the schema
    manifest = _manifest(outcome.run_dir)
    assert errors(manifest) == []
    paths = [f["path"] for f in manifest["inputs"]["raw_data_packages"][0]["files"]]
    assert all(PurePosixPath(p).is_relative_to("/workflow/input/raw") for p in paths)
    assert [p["type"] for p in outcome.products if p["path"].endswith("probe.json")] == [
        DataProductType.INTERMEDIATE.value]
    assert runtime.seen_argv[:2] == ["apptainer", "exec"] and outcome.runtime == runtime.name
