"""The manifest a reduction program reads (``/workflow/config/manifest.json``).

Paths in it are the ones the program sees (container paths under Apptainer, host paths under
the host runtime). Parameters reach the program only through here, never through a shell.
The JSON Schema is ``ccat_assets/schemas/manifest.schema.json``.
"""

from __future__ import annotations

from typing import Any

from ccat_assets.automation.inputs import RunInputs
from ccat_assets.execution.staging_types import StagedInput
from ccat_assets.opsdb import RawDataPackage
from ccat_assets.results.contract import MANIFEST_SCHEMA_VERSION, PathMap, output_dir_for


def observation_of(package: RawDataPackage) -> dict[str, Any]:
    scan = package.executed_obs_unit
    obs_unit = scan.obs_unit
    return {
        "executed_obs_unit": scan.name,
        "obs_unit": obs_unit.name,
        "source": obs_unit.source.name if obs_unit.source else None,
        "line_id": obs_unit.line_id,
        "observing_program": (obs_unit.observing_program.name
                              if obs_unit.observing_program else None),
        "instrument_module": package.instrument_module.name if package.instrument_module else None,
        "start_time": scan.start_time.isoformat() if scan.start_time else None,
    }


def build_manifest(
    *,
    inputs: RunInputs,
    run_id: int,
    dagster_run_id: str | None,
    packages: list[RawDataPackage],
    staged: list[StagedInput],
    product_paths: dict[int, str],
    paths: PathMap,
) -> dict[str, Any]:
    files_by_package: dict[int, list[dict[str, Any]]] = {}
    for item in staged:
        files_by_package.setdefault(item.package_id, []).append({
            "path": paths(item.run_path),
            "relative_path": item.relative_path,
            "checksum": item.checksum,
            "size_bytes": item.size_bytes,
            "file_type": item.file_type,
        })
    software = inputs.step.software
    layout = paths.layout
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "run": {"id": run_id, "dagster_run_id": dagster_run_id},
        "pipeline": {"id": inputs.pipeline.id, "name": inputs.pipeline.name},
        "step": {
            "id": inputs.step.id, "name": inputs.step.name, "is_final": inputs.is_final,
            "group_by": list(inputs.step.group_by),
        },
        "sub_group": {"key": inputs.subgroup.key, "dimensions": inputs.subgroup.dimensions},
        "software": {
            "name": software.name, "version": inputs.version.version,
            "image": inputs.version.image_ref, "digest": inputs.version.digest,
        },
        "parameters": dict(inputs.config.config_parameters or {}),
        "resources": dict(inputs.config.resource_requirements or {}),
        "inputs": {
            "raw_data_packages": [
                {
                    "id": p.id, "name": p.name, "checksum": p.checksum,
                    "metadata": dict(p.meta or {}), "observation": observation_of(p),
                    "files": files_by_package.get(p.id, []),
                }
                for p in packages
            ],
            "products": [
                {
                    "id": u.id, "step": u.step, "sub_group_key": u.sub_group_key,
                    "type": u.product_type.value, "path": product_paths[u.id],
                    "relative_path": u.relative_path, "checksum": u.checksum,
                    "metadata": u.metadata,
                }
                for u in inputs.upstream
            ],
        },
        "output_dir": paths(output_dir_for(layout, inputs.is_final)),
        "workspace_dir": paths(layout.workspace_dir),
        "logs_dir": paths(layout.logs_dir),
    }
