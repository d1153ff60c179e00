"""The stand-in renderer agrees with a real Helm engine, where one is available.

Uses a `helm` binary on PATH (``helm template``), else the `helm_python` module (package
helm-python-sdk, Helm's Go SDK behind ctypes); skips when neither is installed, which is the
case on this project's machines. Both render our templates only: the chart is copied without
its dagster dependency, which cannot be fetched here. Real Helm also applies
values.schema.json, so a schema that Helm's validator cannot compile fails here.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import chart


def _without_dependencies(tmp_path: Path) -> Path:
    copy = tmp_path / chart.CHART.name
    shutil.copytree(chart.CHART, copy)
    meta = yaml.safe_load((copy / "Chart.yaml").read_text())
    meta.pop("dependencies")
    (copy / "Chart.yaml").write_text(yaml.safe_dump(meta))
    return copy


def _real_render(tmp_path: Path, files: tuple[Path, ...]) -> list[dict[str, Any]]:
    binary = shutil.which("helm")
    if binary:
        args = [binary, "template", "ccat", str(_without_dependencies(tmp_path)),
                "--namespace", "ccat"]
        for path in files:
            args += ["-f", str(path)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
        return [d for d in yaml.safe_load_all(done.stdout) if d]
    helm = pytest.importorskip("helm_python", reason="no Helm engine: install helm or "
                               "helm-python-sdk to compare the stand-in with real Helm")
    values: dict[str, Any] = {}
    for path in files:
        values = chart.merge(values, yaml.safe_load(path.read_text()))
    with helm.Chart.load(str(_without_dependencies(tmp_path))) as loaded:
        manifests = loaded.render(values, name="ccat", namespace="ccat")
    return [d for name, text in sorted(manifests.items()) if name.endswith(".yaml")
            for d in yaml.safe_load_all(text) if d]


@pytest.mark.parametrize("files", [(), (chart.STAGING,)], ids=["default", "staging"])
def test_stand_in_renders_what_helm_renders(tmp_path: Path, files: tuple[Path, ...]) -> None:
    real = _real_render(tmp_path, files)
    ours = chart.render(chart.values(*files)).objects

    def key(obj: dict[str, Any]) -> tuple[str, str]:
        return obj["kind"], obj["metadata"]["name"]

    assert sorted(real, key=key) == sorted(ours, key=key)
