"""Render helm/ccat-workflow-manager with Helm itself, as ``helm template`` does.

The engine is Helm's Go SDK (package ``helm-python-sdk``, module ``helm_python``, in the
``helm`` extra), so templates, Sprig functions, value coalescing and the values.schema.json
check are exactly Helm's. Only our own templates are rendered: the dagster dependency
(``charts/dagster-*.tgz``) is fetched from its chart repository by ``helm dependency build``
and is not in this repository, and Helm renders no subchart that is not there. Without the
engine the tests skip on a laptop and fail under ``CCAT_REQUIRE_INTEGRATION=1``.
"""

from __future__ import annotations

import copy
import functools
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "ccat-workflow-manager"
STAGING = CHART / "examples" / "values-staging.yaml"


class ChartError(Exception):
    """Helm refused the values (values.schema.json) or a template failed (``required``)."""


def helm() -> ModuleType:
    """The ``helm_python`` module; a skip (or a failure when integration is required)
    without it, so a laptop without the 240 MB extra still runs the rest of the suite."""
    try:
        import helm_python
    except ImportError:
        helm_python = None
    require_service(helm_python is not None,
                    "Helm's engine (helm-python-sdk: pip install -e '.[helm]')")
    return helm_python


@functools.cache
def _loaded(path: Path) -> Any:
    """The chart at ``path``, loaded once per test process (Helm's charts are immutable)."""
    return helm().Chart.load(str(path))


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge values files as Helm's ``-f a -f b`` does: maps deep, anything else replaced.

    A ``null`` is kept: Helm's coalescing with the chart's defaults then deletes that key.
    """
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def user_values(*files: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``-f FILE ... --set ...`` hand to Helm, before the chart's defaults."""
    merged: dict[str, Any] = {}
    for path in files:
        merged = merge(merged, yaml.safe_load(path.read_text()) or {})
    return merge(merged, overrides or {})


def values(*files: Path, overrides: dict[str, Any] | None = None,
           chart: Path = CHART) -> dict[str, Any]:
    """The values a release gets: chart defaults coalesced with the user's, by Helm."""
    return _loaded(chart).merge_values(user_values(*files, overrides=overrides))


def schema_problems(vals: dict[str, Any], chart: Path = CHART) -> str:
    """Helm's own values.schema.json verdict on ``vals``: its message, empty when valid."""
    try:
        _loaded(chart).validate_schema(vals)
    except helm().HelmValuesError as exc:
        return str(exc)
    return ""


def without_schema(tmp_path: Path) -> Path:
    """A copy of the chart without values.schema.json (``--skip-schema-validation``), to
    reach the templates' own ``required`` checks behind the schema."""
    copied = tmp_path / CHART.name
    shutil.copytree(CHART, copied)
    (copied / "values.schema.json").unlink()
    return copied


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


def render(vals: dict[str, Any], release: str = "ccat", namespace: str = "ccat",
           chart: Path = CHART) -> Rendered:
    """``helm template RELEASE CHART -n NAMESPACE`` with ``vals`` as the user's values."""
    engine = helm()
    try:
        manifests = _loaded(chart).render(vals, name=release, namespace=namespace,
                                          is_install=True)
    except (engine.HelmValuesError, engine.HelmRenderError) as exc:
        raise ChartError(str(exc)) from exc
    objects: list[dict[str, Any]] = []
    for name, text in sorted(manifests.items()):
        if name.endswith(".yaml"):
            objects += [doc for doc in yaml.safe_load_all(text) if doc]
    notes = next((text for name, text in manifests.items() if name.endswith("/NOTES.txt")), "")
    return Rendered(objects, notes)
