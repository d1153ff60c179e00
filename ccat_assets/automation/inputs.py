"""What one (step, sub-group) run consumes: its raw packages, upstream products, version,
config, and the resulting input fingerprint.

The upstream scope of a sub-group is found by re-grouping its own raw packages at each
upstream step's grain (a source+line sub-group covers the per-scan sub-groups of its scans);
this is the exact lineage Dagster's partition mappings cannot express.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from ccat_assets.automation.fingerprint import input_fingerprint, version_token
from ccat_assets.grouping import SubGroup, resolve_subgroups
from ccat_assets.opsdb import (
    DataGrouping,
    DataProduct,
    DataProductType,
    ExecutedReductionStep,
    Pipeline,
    ReductionSoftwareVersion,
    ReductionStep,
    ReductionStepConfig,
    RunStatus,
    VersionPolicy,
)
from ccat_assets.results.contract import RunLayout
from ccat_assets.results.storage_lifecycle import freed_products


class PlanError(RuntimeError):
    """The run cannot be planned (unknown pipeline/step/sub-group, no version, ...)."""


@dataclass(frozen=True)
class UpstreamProduct:
    id: int
    step: str
    sub_group_key: str
    run_id: int
    product_type: DataProductType
    relative_path: str
    path: Path
    checksum: str
    metadata: dict[str, Any]


@dataclass
class RunInputs:
    pipeline: Pipeline
    step: ReductionStep
    subgroup: SubGroup
    version: ReductionSoftwareVersion
    config: ReductionStepConfig
    upstream: list[UpstreamProduct]
    upstream_missing: list[str]
    fingerprint: str
    is_final: bool

    def fingerprint_with(self, token: str) -> str:
        """The fingerprint of these inputs and config with version token ``token``: how a
        completed run of another policy is recognised as a run of exactly these inputs."""
        return _fingerprint(self.subgroup, self.upstream, self.config.content_hash, token)


def load_step(session: Session, pipeline_name: str, step_name: str) -> ReductionStep:
    step = session.scalar(
        sa.select(ReductionStep).join(Pipeline)
        .where(Pipeline.name == pipeline_name, ReductionStep.name == step_name)
        .options(selectinload(ReductionStep.depends_on))
    )
    if step is None:
        raise PlanError(f"pipeline {pipeline_name!r} has no step {step_name!r} in the ops-db")
    return step


def select_version(session: Session, step: ReductionStep) -> ReductionSoftwareVersion:
    """``exact``: the pinned version; ``compatible``: the software's latest version."""
    if VersionPolicy(step.version_policy) == VersionPolicy.EXACT:
        if step.pinned_version is None:
            raise PlanError(f"step {step.name!r} is 'exact' but pins no version")
        return step.pinned_version
    version = session.scalar(sa.select(ReductionSoftwareVersion).filter_by(
        reduction_software_id=step.reduction_software_id, is_latest=True))
    if version is None:
        raise PlanError(f"software {step.software.name!r} has no latest version")
    return version


def is_final_step(session: Session, step: ReductionStep) -> bool:
    """A step no other step of its pipeline depends on writes final products."""
    siblings = session.scalars(sa.select(ReductionStep).filter_by(pipeline_id=step.pipeline_id))
    return not any(step in other.depends_on for other in siblings)


def _no_match(grouping: DataGrouping, group_by: list[str], key: str) -> PlanError:
    return PlanError(
        f"sub-group {key!r} matches no raw data of grouping {grouping.name!r}"
        f" at grain {'+'.join(group_by) or 'all'}"
    )


def upstream_products(
    session: Session, step: ReductionStep, subgroup: SubGroup, grouping: DataGrouping,
    base_dir: Path,
) -> tuple[list[UpstreamProduct], list[str]]:
    """The newest completed products of each upstream step inside the sub-group's scope."""
    products: list[UpstreamProduct] = []
    missing: list[str] = []
    for upstream in step.depends_on:
        scopes = resolve_subgroups(
            session, filter_rules=grouping.filter_rules, group_by=list(upstream.group_by),
            instrument_module_id=grouping.instrument_module_id,
            package_ids=subgroup.raw_data_package_ids,
        )
        keys = [s.key for s in scopes]
        latest: dict[str, ExecutedReductionStep] = {}
        for key_chunk in _chunks(keys, 500):
            rows = session.scalars(
                sa.select(ExecutedReductionStep)
                .where(ExecutedReductionStep.reduction_step_id == upstream.id,
                       ExecutedReductionStep.sub_group_key.in_(key_chunk),
                       ExecutedReductionStep.status == RunStatus.COMPLETED)
                .order_by(ExecutedReductionStep.id.desc())
            )
            for run in rows:
                latest.setdefault(run.sub_group_key, run)
        missing += [f"{upstream.name}:{key}" for key in keys if key not in latest]
        wanted = {key: consumed_products(run) for key, run in latest.items()}
        freed = freed_products(session, [p.id for ps in wanted.values() for p in ps])
        for key in keys:
            if key not in wanted:
                continue
            if any(p.id in freed for p in wanted[key]):
                missing.append(f"{upstream.name}:{key} (intermediates freed: recompute)")
                continue
            products += [_upstream(p, upstream.name, latest[key]) for p in wanted[key]]
    return products, missing


def consumed_products(run: ExecutedReductionStep) -> list[DataProduct]:
    """What a downstream step takes of a completed upstream run: every product but its logs.

    A log describes how a run went, not data to reduce further. Staging it, listing it in
    the manifest or counting it in the fingerprint would make the next step depend on the
    wording of a log line, and lineage and PROV would show it as used. Logs are told apart
    by type only: where a program may write them is the collector's rule
    (``ccat_assets.results.contract``), and rows recorded before that rule are retyped by migration
    0002.
    """
    return [p for p in run.products if p.data_product_type != DataProductType.LOG]


def _upstream(product: DataProduct, step_name: str, run: ExecutedReductionStep) -> UpstreamProduct:
    return UpstreamProduct(
        id=product.id, step=step_name, sub_group_key=run.sub_group_key, run_id=run.id,
        product_type=DataProductType(product.data_product_type),
        relative_path=product.relative_path,
        path=Path(run.run_dir or "") / product.relative_path,
        checksum=product.checksum, metadata=dict(product.meta or {}),
    )


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def plan_inputs(
    session: Session, pipeline_name: str, step_name: str, sub_group_key: str, base_dir: Path
) -> RunInputs:
    planned = plan_inputs_many(session, pipeline_name, step_name, [sub_group_key], base_dir)
    result = planned[sub_group_key]
    if isinstance(result, PlanError):
        raise result
    return result


def plan_inputs_many(
    session: Session, pipeline_name: str, step_name: str, sub_group_keys: Sequence[str],
    base_dir: Path,
) -> dict[str, RunInputs | PlanError]:
    """The inputs of many sub-groups of one step: key -> RunInputs, or the PlanError of a key
    that matches no raw data.

    Why one call for many: a batch plans tens of sub-groups of the same step, and the step,
    pipeline, grouping, software version and finality are the same for all of them; their
    sub-groups resolve in one query. A problem of the step itself (no version) is raised.
    """
    step = load_step(session, pipeline_name, step_name)
    pipeline = step.pipeline
    grouping = pipeline.data_grouping
    group_by = list(step.group_by)
    keys = list(dict.fromkeys(sub_group_keys))
    found = {sg.key: sg for sg in resolve_subgroups(
        session, filter_rules=grouping.filter_rules, group_by=group_by,
        instrument_module_id=grouping.instrument_module_id, keys=keys)}
    planned: dict[str, RunInputs | PlanError] = {
        key: _no_match(grouping, group_by, key) for key in keys if key not in found}
    if not found:
        return planned
    version = select_version(session, step)
    token = version_token(step.version_policy, version.version)
    is_final = is_final_step(session, step)
    for key in keys:
        if key not in found:
            continue
        subgroup = found[key]
        upstream, missing = upstream_products(session, step, subgroup, grouping, base_dir)
        planned[key] = RunInputs(
            pipeline=pipeline, step=step, subgroup=subgroup, version=version,
            config=step.config, upstream=upstream, upstream_missing=missing,
            fingerprint=_fingerprint(subgroup, upstream, step.config.content_hash, token),
            is_final=is_final,
        )
    return planned


def _fingerprint(subgroup: SubGroup, upstream: list[UpstreamProduct], config_hash: str,
                 token: str) -> str:
    return input_fingerprint(
        packages=zip(subgroup.raw_data_package_ids, subgroup.package_checksums, strict=True),
        upstream_products=[(p.id, p.checksum) for p in upstream],
        config_hash=config_hash, version=token)


def layout_for(base_dir: Path, inputs: RunInputs, run_id: int) -> RunLayout:
    return RunLayout.for_run(base_dir, inputs.pipeline.name, inputs.subgroup.key,
                             inputs.step.name, run_id)
