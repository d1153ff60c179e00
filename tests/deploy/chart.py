"""Render helm/ccat-workflow-manager as ``helm template`` would, with the stand-in engine.

Only our own templates are rendered: the dagster dependency (``charts/dagster-*.tgz``) comes
from https://dagster-io.github.io/helm, which this machine cannot reach. Values are merged as
Helm merges them (maps deep, lists replaced, ``null`` deletes a key).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.gotemplate import Renderer

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "ccat-workflow-manager"
STAGING = CHART / "examples" / "values-staging.yaml"


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def values(*files: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Chart defaults, then each file, then ``overrides`` (as ``-f`` and ``--set`` do)."""
    merged = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in files:
        merged = merge(merged, yaml.safe_load(path.read_text()) or {})
    return merge(merged, overrides or {})


@dataclass
class Rendered:
    objects: list[dict[str, Any]]
    notes: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if name in (None, o["metadata"]["name"])]
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
        return found[0]


def render(vals: dict[str, Any], release: str = "ccat", namespace: str = "ccat") -> Rendered:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    context = {
        "Values": vals,
        "Release": {"Name": release, "Namespace": namespace, "Service": "Helm",
                    "IsInstall": True, "IsUpgrade": False},
        "Chart": {"Name": chart["name"], "Version": chart["version"],
                  "AppVersion": chart.get("appVersion", "")},
    }
    engine = Renderer()
    templates = sorted((CHART / "templates").iterdir())
    parsed = {path.name: engine.load(path.read_text()) for path in templates}
    objects: list[dict[str, Any]] = []
    for name, nodes in parsed.items():
        if name.startswith("_") or not name.endswith(".yaml"):
            continue
        text = engine.render(nodes, context)
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    notes = engine.render(parsed["NOTES.txt"], context) if "NOTES.txt" in parsed else ""
    return Rendered(objects, notes)
