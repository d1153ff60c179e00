"""The overhead benchmark's baseline: a step's program run per sub-group in a plain loop.

Each run gets what the workflow manager would give it (the run directory layout of the
container contract, the raw files linked in, a manifest of the same shape, the same argv and
environment from the same ``host`` runtime), prepared beforehand and untimed; only the
program runs are timed, ``parallel`` at a time. No Dagster, no ops-db.
"""

from __future__ import annotations

import hashlib
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ccat_assets.paths import link_or_copy
from ccat_assets.results.contract import PathMap, RunLayout, contract_env, write_manifest
from resources.apptainer import HostRuntime


@dataclass(frozen=True)
class BareRun:
    argv: list[str]
    env: dict[str, str]
    layout: RunLayout


def _staged_files(layout: RunLayout, package: dict[str, Any], archive: Path,
                  paths: PathMap) -> list[dict[str, Any]]:
    """Link a package's raw files into the run's input, as staging does; their manifest rows."""
    files = []
    for item in package["files"]:
        target = layout.raw_input_dir / package["name"] / item["path"]
        link_or_copy(archive / package["path"] / item["path"], target)
        files.append({"path": paths(target), "relative_path": item["path"],
                      "checksum": item["checksum"], "size_bytes": item["size_bytes"],
                      "file_type": item["file_type"]})
    return files


def _observation(observations: dict[str, Any], scan: str) -> dict[str, Any]:
    """The manifest's ``observation`` of a scan, from the ingest manifest's rows."""
    executed = next(e for e in observations["executed_obs_units"] if e["name"] == scan)
    unit = next(u for u in observations["obs_units"] if u["name"] == executed["obs_unit"])
    return {"executed_obs_unit": scan, "obs_unit": unit["name"], "source": unit["source"],
            "line_id": unit["line_id"], "observing_program": unit["observing_program"],
            "instrument_module": unit["instrument_module"],
            "start_time": executed["start_time"].replace("Z", "+00:00")}


def _manifest(layout: RunLayout, run_id: int, key: str, package: dict[str, Any],
              files: list[dict[str, Any]], step: dict[str, Any], observation: dict[str, Any],
              paths: PathMap) -> dict[str, Any]:
    """The fields ``ccat_assets.execution.manifest.build_manifest`` writes, without an ops-db."""
    checksum = "sha256:" + hashlib.sha256(package["name"].encode()).hexdigest()
    return {
        "schema_version": 1, "run": {"id": run_id, "dagster_run_id": None},
        "pipeline": {"id": 1, "name": step["pipeline"]},
        "step": {"id": 1, "name": step["name"], "is_final": True, "group_by": step["group_by"]},
        "sub_group": {"key": key,
                      "dimensions": {"executed_obs_unit": package["executed_obs_unit"]}},
        "software": {"name": step["software"], "version": "1.0.0", "image": step["image"],
                     "digest": None},
        "parameters": dict(step["config"]["parameters"]),
        "resources": dict(step["config"]["resources"]),
        "inputs": {"raw_data_packages": [{
            "id": run_id, "name": package["name"], "checksum": checksum,
            "metadata": package.get("metadata", {}), "observation": observation,
            "files": files}], "products": []},
        "output_dir": paths(layout.output_dir), "workspace_dir": paths(layout.workspace_dir),
        "logs_dir": paths(layout.logs_dir),
    }


def prepare(base_dir: Path, ingest_manifest: Path, step: dict[str, Any],
            keys: dict[str, str]) -> list[BareRun]:
    """One ready run per package of ``ingest_manifest``; ``keys``: scan -> sub-group key."""
    observations = yaml.safe_load(ingest_manifest.read_text())
    archive = Path(observations["locations"][0]["base_path"])
    runtime = HostRuntime()
    runs = []
    for run_id, package in enumerate(observations["raw_data_packages"], start=1):
        key = keys[package["executed_obs_unit"]]
        layout = RunLayout.for_run(base_dir, step["pipeline"], key, step["name"], run_id)
        layout.create()
        paths = PathMap(layout, runtime.in_container)
        files = _staged_files(layout, package, archive, paths)
        observation = _observation(observations, package["executed_obs_unit"])
        write_manifest(layout.manifest_path, _manifest(layout, run_id, key, package, files,
                                                       step, observation, paths))
        env = contract_env(paths=paths, is_final=True, step=step["name"], sub_group_key=key,
                           run_id=run_id, cpu=int(step["config"]["resources"]["cpu"]))
        argv, process_env = runtime.command(
            argv=list(step["config"]["command"]), env=env, binds=layout.binds(),
            image=step["image"], gpu=0, workdir=layout.workspace_dir)
        runs.append(BareRun(argv, process_env, layout))
    return runs


def _run_one(run: BareRun) -> int:
    with open(run.layout.logs_dir / "stdout.log", "ab") as out, \
            open(run.layout.logs_dir / "stderr.log", "ab") as err:
        return subprocess.run(  # noqa: S603 - the step's argv, no shell
            run.argv, env=run.env, cwd=run.layout.workspace_dir, stdout=out, stderr=err,
            stdin=subprocess.DEVNULL, check=False).returncode


def run_all(runs: list[BareRun], parallel: int) -> None:
    """Run every program, ``parallel`` at a time; fail loudly if any did not make a product."""
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        codes = list(pool.map(_run_one, runs))
    failed = [str(r.layout.root) for r, code in zip(runs, codes, strict=True) if code != 0]
    missing = [str(r.layout.root) for r in runs
               if not any((r.layout.output_dir / "science").iterdir())]
    if failed or missing:
        raise RuntimeError(f"bare runs failed: {failed[:3]}; without a product: {missing[:3]}")
