"""The CCAT Workflow Manager container contract, shared by every CHAI step program.

The orchestrator hands a program nothing but environment variables and a manifest
JSON; everything a step needs (inputs, parameters, identity) is read from there,
and everything it produces goes below ``WORKFLOW_OUTPUT_DIR``. Centralising this
keeps the science modules free of plumbing and makes the rules hard to break:
output paths can only be obtained through :meth:`StepContext.out`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astropy.io import fits

from . import __version__

SCHEMA_VERSION = 1
OUTPUT_SUBDIRS = ("science", "qa", "plots", "statistics", "logs")


class ContractError(RuntimeError):
    """A problem the operator has to fix (bad manifest, missing inputs).

    Reported as one clear line on stderr, without a traceback, and exit code 2.
    """


def sha256_of(path: Path) -> str:
    """Checksum in the manifest's ``sha256:<hex>`` notation."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


@dataclass
class StepContext:
    """Everything a step program may know about its invocation."""

    program: str
    manifest: dict[str, Any]
    output_dir: Path
    step: str
    sub_group_key: str
    run_id: str
    threads: str
    log_lines: list[str] = field(default_factory=list)

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.manifest.get("parameters") or {})

    def log(self, message: str) -> None:
        """Progress goes to stdout (captured by the orchestrator) and to logs/."""
        self.log_lines.append(message)
        print(f"[{self.program}] {message}", flush=True)

    def out(self, subdir: str, name: str) -> Path:
        """The only way to obtain a path to write to: always inside the output dir."""
        if subdir not in OUTPUT_SUBDIRS or Path(name).name != name:
            raise ValueError(f"refusing to write {subdir}/{name}")
        target = self.output_dir / subdir
        target.mkdir(parents=True, exist_ok=True)
        return target / name

    def raw_packages(self) -> list[dict[str, Any]]:
        packages = (self.manifest.get("inputs") or {}).get("raw_data_packages") or []
        if not packages:
            raise ContractError(f"manifest lists no raw data packages for {self.sub_group_key!r}")
        return packages

    def fits_products(self, product_kind: str) -> list[Path]:
        """Upstream FITS products whose primary header says ``CHAIPROD = product_kind``.

        Upstream steps may also have registered sidecars, plots or QA files, so the
        kind is taken from the file itself rather than from its name.
        """
        paths = []
        for product in (self.manifest.get("inputs") or {}).get("products") or []:
            path = Path(product["path"])
            if path.suffix.lower() != ".fits":
                continue
            if not path.is_file():
                raise ContractError(f"input product {path} does not exist")
            if fits.getheader(path).get("CHAIPROD") == product_kind:
                paths.append(path)
        if not paths:
            raise ContractError(
                f"manifest lists no {product_kind} products for {self.sub_group_key!r}"
            )
        return sorted(paths)

    def write_json(self, subdir: str, name: str, payload: dict[str, Any]) -> Path:
        path = self.out(subdir, name)
        path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        return path

    def write_sidecar(
        self, product: Path, metadata: dict[str, Any], quality: dict[str, Any]
    ) -> None:
        """``<file>.meta.json``: what the orchestrator records with the product."""
        sidecar = product.with_name(product.name + ".meta.json")
        if sidecar.parent.parent != self.output_dir:
            raise ValueError(f"sidecar {sidecar} outside the output dir")
        payload = {"metadata": metadata, "quality_metrics": quality}
        sidecar.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")

    def provenance(self) -> dict[str, Any]:
        """Identity of this invocation, copied into every product's metadata."""
        return {
            "program": self.program,
            "program_version": __version__,
            "run_id": self.run_id,
            "step": self.step,
            "sub_group_key": self.sub_group_key,
        }

    def flush_log(self) -> None:
        path = self.out("logs", f"{self.program}.log")
        path.write_text("\n".join(self.log_lines) + "\n")


def load_context(program: str) -> StepContext:
    """Read the environment and manifest; fail early and clearly if either is unusable."""
    manifest_path = os.environ.get("WORKFLOW_MANIFEST")
    if not manifest_path:
        raise ContractError("WORKFLOW_MANIFEST is not set")
    try:
        manifest = json.loads(Path(manifest_path).read_text())
    except (OSError, ValueError) as exc:
        raise ContractError(f"cannot read manifest {manifest_path}: {exc}") from exc
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ContractError(
            f"unsupported manifest schema_version {manifest.get('schema_version')!r}"
        )
    output = os.environ.get("WORKFLOW_OUTPUT_DIR") or manifest.get("output_dir")
    if not output:
        raise ContractError("WORKFLOW_OUTPUT_DIR is not set")
    output_dir = Path(output)
    output_dir.mkdir(parents=True, exist_ok=True)
    step = manifest.get("step") or {}
    sub_group = manifest.get("sub_group") or {}
    return StepContext(
        program=program,
        manifest=manifest,
        output_dir=output_dir,
        step=os.environ.get("WORKFLOW_STEP") or step.get("name", ""),
        sub_group_key=os.environ.get("WORKFLOW_SUB_GROUP_KEY") or sub_group.get("key", ""),
        run_id=os.environ.get("WORKFLOW_RUN_ID") or str((manifest.get("run") or {}).get("id")),
        threads=os.environ.get("OMP_NUM_THREADS", "1"),
    )


def run(program: str, body: Callable[[StepContext], None], argv: list[str] | None) -> int:
    """Entry point shared by the step programs: parameters never come from argv."""
    parser = argparse.ArgumentParser(
        prog=program,
        description=(body.__doc__ or "").strip().splitlines()[0],
        epilog="All inputs and parameters come from the manifest named by WORKFLOW_MANIFEST; "
        "all outputs go below WORKFLOW_OUTPUT_DIR.",
    )
    parser.add_argument("--version", action="version", version=f"{program} {__version__}")
    parser.parse_args(argv)
    try:
        ctx = load_context(program)
        ctx.log(f"step={ctx.step} sub_group={ctx.sub_group_key} run={ctx.run_id} "
                f"threads={ctx.threads}")
        body(ctx)
        ctx.log("done")
        ctx.flush_log()
    except ContractError as exc:
        print(f"{program}: error: {exc}", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 - any other failure must still exit non-zero
        traceback.print_exc()
        print(f"{program}: error: unexpected failure (traceback above)", file=sys.stderr)
        return 1
    return 0
