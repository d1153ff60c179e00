"""Builders of realistic test data: archived raw files, ingest manifests and pipeline specs."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import yaml

PROGRAM = Path(__file__).parent / "programs" / "reduce_copy.py"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_observations(
    archive: Path, scans: list[tuple[str, str, str]], *, night: str = "2026-11-01",
    files_per_package: int = 2, location: str = "test-archive",
) -> Path:
    """Write raw files for ``(scan, source, line)`` triples and an ingest manifest; return it."""
    archive.mkdir(parents=True, exist_ok=True)
    sources = sorted({s for _, s, _ in scans})
    obs_units = sorted({(s, line) for _, s, line in scans})
    packages = []
    for scan, source, line in scans:
        pkg_dir = archive / night / scan
        pkg_dir.mkdir(parents=True, exist_ok=True)
        files = []
        for i in range(files_per_package):
            data = f"{scan} {source} {line} spectrum {i}\n".encode() * (i + 1)
            (pkg_dir / f"spec_{i}.dat").write_bytes(data)
            files.append({"path": f"spec_{i}.dat", "size_bytes": len(data),
                          "checksum": _sha(data), "file_type": "dat"})
        packages.append({
            "name": f"{scan}-chai", "executed_obs_unit": scan, "instrument_module": "CHAI",
            "state": "ARCHIVED", "location": location, "path": f"{night}/{scan}",
            "metadata": {"observation": {"frequency_ghz": 461.04 if line == "CO43" else 1900.5}},
            "files": files,
        })
    manifest = {
        "locations": [{"name": location, "type": "LONG_TERM_ARCHIVE", "base_path": str(archive)}],
        "observing_programs": [{"name": "GEco"}],
        "instrument_modules": [{"name": "CHAI", "instrument": "CHAI"}],
        "sources": [{"name": s} for s in sources],
        "obs_units": [{"name": f"{s}-{line}", "source": s, "line_id": line,
                       "observing_program": "GEco", "instrument_module": "CHAI"}
                      for s, line in obs_units],
        "executed_obs_units": [
            {"name": scan, "obs_unit": f"{s}-{line}", "start_time": f"{night}T03:00:00Z"}
            for scan, s, line in scans
        ],
        "raw_data_packages": packages,
    }
    path = archive / f"ingest-{night}.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def pipeline_spec(processing_dir: Path, *, name: str = "chai_test", tag: str = "v1",
                  extra_step_params: dict[str, Any] | None = None,
                  final_grain: list[str] | None = None) -> dict[str, Any]:
    """Two steps: per-scan ``calibrate`` then per-source+line ``grid`` (final)."""
    command = [sys.executable, str(PROGRAM)]
    return {
        "locations": [{"name": "test-processing", "type": "PROCESSING",
                       "base_path": str(processing_dir)}],
        "software": [
            {"name": "test-calibration", "versions": [
                {"version": "1.0.0", "image": "ghcr.io/ccatobs/test-calibration:1.0.0"}]},
            {"name": "test-gridding", "versions": [
                {"version": "1.0.0", "image": "ghcr.io/ccatobs/test-gridding:1.0.0"}]},
        ],
        "groupings": [{
            "name": "chai-archived", "instrument_module": "CHAI",
            "filter_rules": [
                {"table": "RawDataPackage", "column": "state", "operator": "eq",
                 "value": "archived"},
            ],
        }],
        "pipelines": [{
            "name": name, "grouping": "chai-archived",
            "processing_location": "test-processing", "trigger": {"type": "MANUAL"},
            "priority": 5, "created_by": "tester",
            "steps": [
                {"name": "calibrate", "software": "test-calibration",
                 "group_by": ["executed_obs_unit"], "cooldown_seconds": 0, "max_retries": 1,
                 "max_concurrent_runs": 2,
                 "config": {"command": command,
                            "parameters": {"tag": tag, **(extra_step_params or {})},
                            "resources": {"cpu": 1, "memory_gb": 1, "time_hours": 1}}},
                {"name": "grid", "software": "test-gridding", "depends_on": ["calibrate"],
                 "group_by": final_grain if final_grain is not None else ["source", "line"],
                 "cooldown_seconds": 0,
                 "config": {"command": command, "parameters": {"tag": tag}}},
            ],
        }],
    }


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


CHATTY = Path(__file__).parent / "execution" / "programs" / "chatty.py"


def chatty_spec(processing_dir: Path, **params: Any) -> dict[str, Any]:
    """:func:`pipeline_spec` whose ``calibrate`` step runs the talking program
    (``tests/execution/programs/chatty.py``) with ``params``."""
    spec = pipeline_spec(processing_dir)
    calibrate = spec["pipelines"][0]["steps"][0]
    calibrate["config"]["command"] = [sys.executable, str(CHATTY)]
    calibrate["config"]["parameters"] = dict(params)
    return spec


def reduced_step(name: str, group_by: tuple[str, ...], packages: dict[str, tuple[int, ...]],
                 finished: dict[str, Any]) -> Any:
    """A gap-evaluation StepState whose sub-groups (key -> raw package ids) are those of
    ``packages``, with a COMPLETED run finished at ``finished[key]`` for each key there:
    the shape the retirement rule reads (tests and ``bench/retirement.py``)."""
    from ccat_assets.automation.gaps import CompletedRun, StepState
    from ccat_assets.grouping import SubGroup
    from ccat_assets.opsdb.enums import VersionPolicy

    newest = min(finished.values(), default=None)
    return StepState(
        name=name, group_by=group_by, depends_on=(), cooldown_seconds=0, max_retries=0,
        schedule=None, config_hash="cfg", version_policy=VersionPolicy.COMPATIBLE,
        version="1.0.0",
        subgroups={k: SubGroup(key=k, dimensions={}, raw_data_package_ids=ids,
                               package_checksums=(), newest_input_at=newest)
                   for k, ids in packages.items()},
        completed={k: CompletedRun(run_id=1, fingerprint="fp", config_hash="cfg",
                                   version="1.0.0", finished_at=at)
                   for k, at in finished.items()})
