"""The container contract: directory layout, manifest, environment, output types.

Inside the container a step sees ``/workflow/input`` (read-only), ``/workflow/workspace/<step>``,
``/workflow/output/{science,qa,plots,statistics,logs}``, ``/workflow/config/manifest.json``
(read-only) and ``/workflow/logs``. Log files are LOG products wherever the contract lets a
program put them: ``/workflow/logs/`` and the ``logs/`` folder of ``WORKFLOW_OUTPUT_DIR`` (so
``workspace/<step>/logs/`` of an intermediate step too); a LOG product is never an input of a
downstream step. The upstream products a run consumes also appear read-only at
``/workflow/workspace/<upstream step>/``, where programs written for the seed contract look
for them (``ccat_assets.execution.upstream_view``). On the host each run has its own directory,
``<PIPELINE_BASE_DIR>/<pipeline>/<sub_group_key>/<step>/run-<id>/``, so that a rerun never
overwrites the files an earlier run recorded as products. ``docs/container_contract.md`` is
the written spec for container authors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ccat_assets.opsdb.enums import DataProductType
from ccat_assets.paths import join_inside

MANIFEST_SCHEMA_VERSION = 1
CONTAINER_ROOT = PurePosixPath("/workflow")

#: Output subfolder -> product type. Files elsewhere under the output dir are not products.
OUTPUT_TYPES: dict[str, DataProductType] = {
    "science": DataProductType.SCIENCE,
    "qa": DataProductType.QA_METRIC,
    "plots": DataProductType.PLOT,
    "statistics": DataProductType.STATISTICS,
    "logs": DataProductType.LOG,
}
#: The folder of ``WORKFLOW_OUTPUT_DIR`` (and the run directory) that holds log files.
LOGS_SUBDIR = "logs"
SIDECAR_SUFFIX = ".meta.json"


@dataclass(frozen=True)
class RunLayout:
    """The host directories of one run, all under its own run directory."""

    root: Path
    step: str

    @classmethod
    def for_run(
        cls, base_dir: Path, pipeline: str, sub_group_key: str, step: str, run_id: int
    ) -> RunLayout:
        root = join_inside(base_dir, f"{pipeline}/{sub_group_key}/{step}/run-{run_id}")
        return cls(root=root, step=step)

    @property
    def input_dir(self) -> Path:
        return self.root / "input"

    @property
    def raw_input_dir(self) -> Path:
        return self.input_dir / "raw"

    @property
    def products_input_dir(self) -> Path:
        return self.input_dir / "products"

    @property
    def workspace_root(self) -> Path:
        return self.root / "workspace"

    @property
    def workspace_dir(self) -> Path:
        return self.workspace_root / self.step

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def manifest_path(self) -> Path:
        return self.config_dir / "manifest.json"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def create(self) -> None:
        for directory in (self.raw_input_dir, self.products_input_dir, self.workspace_dir,
                          self.config_dir, self.logs_dir):
            directory.mkdir(parents=True, exist_ok=True)
        for sub in OUTPUT_TYPES:
            (self.output_dir / sub).mkdir(parents=True, exist_ok=True)

    def binds(self, upstream_steps: Sequence[str] = ()) -> list[tuple[Path, PurePosixPath, bool]]:
        """(host, container, read_only) for every contract directory.

        ``upstream_steps`` adds ``workspace/<upstream step>/`` read-only over itself, after
        the writable workspace bind it lies in: the seed contract's view of the upstream
        intermediates (``ccat_assets.execution.upstream_view``), which the program must not change.
        """
        binds = [
            (self.input_dir, CONTAINER_ROOT / "input", True),
            (self.workspace_root, CONTAINER_ROOT / "workspace", False),
            (self.output_dir, CONTAINER_ROOT / "output", False),
            (self.config_dir, CONTAINER_ROOT / "config", True),
            (self.logs_dir, CONTAINER_ROOT / "logs", False),
        ]
        binds += [(self.workspace_root / step, CONTAINER_ROOT / "workspace" / step, True)
                  for step in upstream_steps]
        return binds


class PathMap:
    """Maps host paths of a run to the paths the program sees.

    Under Apptainer these are the ``/workflow`` paths; under the ``host`` runtime they are
    the host paths themselves, so the same manifest and env work without a container.
    """

    def __init__(self, layout: RunLayout, in_container: bool):
        self.layout = layout
        self.in_container = in_container

    def __call__(self, host_path: Path) -> str:
        if not self.in_container:
            return str(host_path)
        for host, container, _ro in self.layout.binds():
            if host_path == host or host in host_path.parents:
                return str(container / host_path.relative_to(host).as_posix())
        raise ValueError(f"{host_path} is not inside any bound directory of the run")


def output_dir_for(layout: RunLayout, is_final: bool) -> Path:
    """Final steps write products to the output dir; intermediate steps to their workspace."""
    return layout.output_dir if is_final else layout.workspace_dir


def output_logs_dir(layout: RunLayout, is_final: bool) -> Path:
    """``$WORKFLOW_OUTPUT_DIR/logs``: where a program that keeps its logs next to its products
    writes them, ``output/logs`` for a final step and ``workspace/<step>/logs`` otherwise."""
    return output_dir_for(layout, is_final) / LOGS_SUBDIR


def contract_env(
    *, paths: PathMap, is_final: bool, step: str, sub_group_key: str, run_id: int, cpu: int
) -> dict[str, str]:
    layout = paths.layout
    return {
        "WORKFLOW_OUTPUT_DIR": paths(output_dir_for(layout, is_final)),
        "WORKFLOW_MANIFEST": paths(layout.manifest_path),
        "WORKFLOW_STEP": step,
        "WORKFLOW_SUB_GROUP_KEY": sub_group_key,
        "WORKFLOW_RUN_ID": str(run_id),
        "WORKFLOW_LOGS_DIR": paths(layout.logs_dir),
        "OMP_NUM_THREADS": str(cpu),
    }


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write atomically and read-only: the program must not be able to change its inputs."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    os.chmod(tmp, 0o444)
    os.replace(tmp, path)


def product_type_for(relative_to_output: PurePosixPath) -> DataProductType | None:
    """The product type of a file by its first output subfolder, None if not a product."""
    if len(relative_to_output.parts) < 2:
        return None
    return OUTPUT_TYPES.get(relative_to_output.parts[0])


def workspace_product_type(relative_to_workspace: PurePosixPath) -> DataProductType:
    """The product type of a file in an intermediate step's workspace folder.

    Files under its ``logs/`` folder are LOG, as under ``output/logs/`` of a final step: the
    same program writes ``$WORKFLOW_OUTPUT_DIR/logs/x.log`` whichever kind of step it runs as,
    and a log must never become an input of the next step. Everything else is INTERMEDIATE.
    """
    parts = relative_to_workspace.parts
    if len(parts) >= 2 and parts[0] == LOGS_SUBDIR:
        return DataProductType.LOG
    return DataProductType.INTERMEDIATE
