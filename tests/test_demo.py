"""The demo as a test: `make demo`'s script end to end on a private home (real
dagster-daemon, the standing pipeline filling its gaps by itself, a second night reprocessing
only what it touched; built once per session by the ``demo_state`` fixture, which other tests
share), then the Dagster webserver over a copy of that state, queried through
dagster-graphql's client: the asset graph has the pipeline's assets and their
materializations per partition, and a pipeline applied while the webserver runs appears
after `ccat-wm apply` reloads the code location."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.demokit import BIN, ROOT, DemoState, copy_demo_state, webserver

ASSETS_QUERY = """
query {
  assetNodes(group: {groupName: "chai_standing", repositoryName: "__repository__",
                     repositoryLocationName: "ccat_assets.definitions"}) {
    assetKey { path }
    partitionKeysByDimension { partitionKeys }
    assetMaterializations(limit: 100) {
      partition
      metadataEntries { label ... on MarkdownMetadataEntry { mdStr } }
    }
  }
}
"""


def _apply_a_new_pipeline(tmp_path: Path, env: dict[str, str], port: int) -> str:
    """`ccat-wm apply` of a new pipeline while the webserver runs: it asks the webserver to
    reload the code location, so the new assets appear without a restart."""
    spec = yaml.safe_load((ROOT / "examples/chai/pipelines.yaml").read_text())
    adhoc = next(p for p in spec["pipelines"] if p["name"] == "chai_ngc253_adhoc")
    spec["pipelines"] = [{**adhoc, "name": "chai_reloaded"}]
    path = tmp_path / "reloaded.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = subprocess.run(
        [str(BIN / "ccat-wm"), "apply", str(path)], cwd=ROOT, capture_output=True, text=True,
        env={**env, "CCAT_WORKFLOW_MANAGER_DAGSTER_WEBSERVER_URL": f"http://127.0.0.1:{port}"},
        timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.integration
@pytest.mark.slow
def test_demo_runs_end_to_end_and_the_webserver_shows_it(demo_state: DemoState,
                                                         tmp_path: Path) -> None:
    out = demo_state.output
    assert "grid         COMPLETED     3" in out  # 2 maps, then the touched one once more
    assert "calibrate    COMPLETED     6" in out  # 4 scans, then 2 new ones; none twice
    assert "sub-groups reduced more than once (new data touched them): 1" in out
    quicklook = out.split("quicklook: ")[1].splitlines()[0]
    assert quicklook.endswith(".png") and Path(quicklook).stat().st_size > 1000

    web_env = copy_demo_state(demo_state, tmp_path / "demo")
    checked = subprocess.run([str(BIN / "ccat-wm"), "check"], cwd=ROOT, env=web_env,
                             capture_output=True, text=True, timeout=300, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr  # Dagster == ops-db
    with webserver(web_env, tmp_path / "webserver.log") as (port, client):
        data = client._execute(ASSETS_QUERY)  # noqa: SLF001 - the client's raw query
        reloaded = _apply_a_new_pipeline(tmp_path, web_env, port)
        new_nodes = client._execute(  # noqa: SLF001
            ASSETS_QUERY.replace('"chai_standing"', '"chai_reloaded"'))["assetNodes"]
    assert "reloaded code location 'ccat_assets.definitions'" in reloaded
    assert {"/".join(n["assetKey"]["path"]) for n in new_nodes} == {
        "ccat/chai_reloaded/calibrate", "ccat/chai_reloaded/baseline",
        "ccat/chai_reloaded/grid"}
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    assert set(nodes) == {"ccat/chai_standing/calibrate", "ccat/chai_standing/baseline",
                          "ccat/chai_standing/grid"}
    calibrate = nodes["ccat/chai_standing/calibrate"]
    materialized = {m["partition"] for m in calibrate["assetMaterializations"]}
    assert len(materialized) == 6
    assert materialized <= set(calibrate["partitionKeysByDimension"][0]["partitionKeys"])
    grid = {m["partition"] for m in nodes["ccat/chai_standing/grid"]["assetMaterializations"]}
    assert grid == {"source=NGC253__line=CO43", "source=ORION__line=CO43"}
    # what a person reads: the consumed inputs (batch members too) and the map's quicklook
    labels = {e["label"] for e in calibrate["assetMaterializations"][0]["metadataEntries"]}
    assert {"raw_inputs", "exit_code", "input_fingerprint"} <= labels
    for m in nodes["ccat/chai_standing/grid"]["assetMaterializations"]:
        entries = {e["label"]: e for e in m["metadataEntries"]}
        assert {"raw_inputs", "upstream_inputs"} <= set(entries)
        [preview] = [e["mdStr"] for label, e in entries.items() if label.startswith("quicklook ")]
        assert preview.startswith("![") and "](data:image/png;base64," in preview
