"""The provenance graph of one product: every run, product, raw package and software version
it was made from, loaded level by level with a few set-based queries per level.

This is the shared model behind the lineage tree, its JSON and the W3C PROV export; it holds
plain values (no ORM objects) so that renderers need no session.
"""

from __future__ import annotations

import datetime as dt
import posixpath
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ccat_assets.grouping.dialect import id_in
from ccat_assets.opsdb import (
    DataLocation,
    DataProduct,
    DataProductType,
    ExecutedReductionStep,
    PhysicalCopy,
    Pipeline,
    RawDataFile,
    RawDataPackage,
    ReductionSoftware,
    ReductionSoftwareVersion,
    ReductionStep,
    ReductionStepConfig,
    User,
    run_input_data_product,
    run_input_raw_data_package,
)


class UnknownProduct(LookupError):
    """No DataProduct with that id."""


@dataclass(frozen=True)
class CopyInfo:
    location: str
    status: str
    path: str
    deleted_at: dt.datetime | None
    uri: str = ""


def copy_uri(path: str, base_path: str, host: str | None) -> str:
    """Where a copy is, as a URI a PROV consumer can follow.

    A location whose ``base_path`` is itself a URI (``s3://bucket/prefix``) is the configured
    storage URI and relative paths are joined to it; otherwise the copy is a file, on
    ``host`` when the location has one (``file://host/path``, RFC 8089) or on this
    filesystem (``file:///path``).
    """
    if "://" in path:
        return path
    if "://" in base_path:
        return f"{base_path.rstrip('/')}/{quote(path.lstrip('/'))}"
    full = path if path.startswith("/") else posixpath.join(base_path, path)
    return f"file://{host or ''}{quote(posixpath.normpath(full))}"


@dataclass(frozen=True)
class ProductNode:
    id: int
    run_id: int
    name: str
    relative_path: str
    product_type: str
    format: str | None
    size_bytes: int
    checksum: str
    created_at: dt.datetime
    quality_metrics: dict[str, Any]
    copies: tuple[CopyInfo, ...] = ()


@dataclass(frozen=True)
class RunNode:
    id: int
    pipeline: str
    step: str
    sub_group_key: str
    status: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    command: tuple[str, ...]
    software_version_id: int
    config_name: str
    config_hash: str
    config_id: int
    created_by: str | None
    dagster_run_id: str | None
    hpc_backend: str | None
    hpc_job_id: str | None
    container_runtime: str | None
    input_product_ids: tuple[int, ...]
    input_raw_data_package_ids: tuple[int, ...]


@dataclass(frozen=True)
class RawFileNode:
    id: str
    relative_path: str
    size_bytes: int
    checksum: str


@dataclass(frozen=True)
class RawPackageNode:
    id: int
    name: str
    checksum: str
    size_bytes: int
    relative_path: str
    files: tuple[RawFileNode, ...] = ()


@dataclass(frozen=True)
class SoftwareNode:
    id: int
    name: str
    version: str
    image: str
    digest: str | None
    repository: str | None = None


@dataclass(frozen=True)
class ConfigNode:
    """A step's immutable configuration: what a run was told to do (its PROV plan)."""

    id: int
    name: str
    content_hash: str
    parameters: dict[str, Any]
    environment_variables: dict[str, str]
    resource_requirements: dict[str, Any]


@dataclass
class LineageGraph:
    """Everything ``root`` descends from, keyed by id."""

    root: int
    products: dict[int, ProductNode] = field(default_factory=dict)
    runs: dict[int, RunNode] = field(default_factory=dict)
    raw_packages: dict[int, RawPackageNode] = field(default_factory=dict)
    software: dict[int, SoftwareNode] = field(default_factory=dict)
    configs: dict[int, ConfigNode] = field(default_factory=dict)

    def run_of(self, product_id: int) -> RunNode:
        return self.runs[self.products[product_id].run_id]

    def to_json(self) -> dict[str, Any]:
        """A flat, tool-friendly document: nodes by kind, edges as id lists on the runs."""
        def rows(nodes: Iterable[Any]) -> list[dict[str, Any]]:
            return [_plain(n) for n in sorted(nodes, key=lambda n: n.id)]
        return {
            "product": self.root,
            "products": rows(self.products.values()),
            "runs": rows(self.runs.values()),
            "raw_data_packages": rows(self.raw_packages.values()),
            "software": rows(self.software.values()),
            "configs": rows(self.configs.values()),
        }


def _plain(node: Any) -> dict[str, Any]:
    out = {}
    for name in node.__dataclass_fields__:
        value = getattr(node, name)
        if isinstance(value, tuple):
            value = [_plain(v) if hasattr(v, "__dataclass_fields__") else v for v in value]
        elif isinstance(value, dt.datetime):
            value = value.isoformat()
        out[name] = value
    return out


def _in(session: Session, column: sa.ColumnElement[Any], ids: Collection[int]
        ) -> sa.ColumnElement[bool]:
    """``column IN ids`` as one bound parameter, however many ids (no chunking needed)."""
    return id_in(column, sorted(ids), session.get_bind().dialect.name)


def load_lineage(session: Session, product_id: int, *, with_files: bool = True) -> LineageGraph:
    """The graph of ``product_id`` down to raw packages (and their files)."""
    graph = LineageGraph(root=product_id)
    frontier = {product_id}
    while frontier:
        _load_products(session, graph, frontier)
        if product_id not in graph.products:
            raise UnknownProduct(f"no data product with id {product_id}")
        run_ids = {graph.products[p].run_id for p in frontier} - graph.runs.keys()
        _load_runs(session, graph, run_ids)
        frontier = {pid for r in run_ids for pid in graph.runs[r].input_product_ids
                    } - graph.products.keys()
    raw_ids = {rid for run in graph.runs.values() for rid in run.input_raw_data_package_ids}
    _load_raw(session, graph, raw_ids, with_files)
    _load_software(session, graph, {r.software_version_id for r in graph.runs.values()})
    _load_configs(session, graph, {r.config_id for r in graph.runs.values()})
    return graph


def _load_products(session: Session, graph: LineageGraph, ids: Collection[int]) -> None:
    # Plain columns, not ORM entities: a map of 10,000 packages has 20,000 ancestors.
    copies: dict[int, list[CopyInfo]] = {}
    for pid, name, status, path, deleted_at, base_path, host in session.execute(
        sa.select(PhysicalCopy.data_product_id, DataLocation.name, PhysicalCopy.status,
                  PhysicalCopy.path, PhysicalCopy.deleted_at, DataLocation.base_path,
                  DataLocation.host)
        .join(DataLocation, DataLocation.id == PhysicalCopy.data_location_id)
        .where(_in(session, PhysicalCopy.data_product_id, ids)).order_by(PhysicalCopy.id)
    ):
        copies.setdefault(pid, []).append(CopyInfo(name, str(status), path, deleted_at,
                                                   copy_uri(path, base_path, host)))
    p = DataProduct
    for row in session.execute(
        sa.select(p.id, p.executed_reduction_step_id, p.name, p.relative_path,
                  p.data_product_type, p.format, p.size_bytes, p.checksum, p.created_at,
                  p.quality_metrics)
        .where(_in(session, p.id, ids))
    ):
        graph.products[row[0]] = ProductNode(
            id=row[0], run_id=row[1], name=row[2], relative_path=row[3],
            product_type=str(row[4]), format=row[5], size_bytes=row[6], checksum=row[7],
            created_at=row[8], quality_metrics=dict(row[9] or {}),
            copies=tuple(copies.get(row[0], ())))


def _input_products(session: Session, run_ids: Collection[int]) -> dict[int, list[int]]:
    """Run id -> the products it used, leaving out LOG products.

    A log is never an input; runs recorded before logs in a step's workspace were told apart
    still list them among their inputs, and lineage and PROV must not say they were used.
    """
    inputs: dict[int, list[int]] = {}
    t = run_input_data_product
    for run_id, pid in session.execute(
        sa.select(t.c.executed_reduction_step_id, t.c.data_product_id)
        .join(DataProduct, DataProduct.id == t.c.data_product_id)
        .where(_in(session, t.c.executed_reduction_step_id, run_ids),
               DataProduct.data_product_type != DataProductType.LOG)
    ):
        inputs.setdefault(run_id, []).append(pid)
    return inputs


def _load_runs(session: Session, graph: LineageGraph, ids: Collection[int]) -> None:
    ers = ExecutedReductionStep
    inputs = _input_products(session, ids)
    raw: dict[int, list[int]] = {}
    t = run_input_raw_data_package
    for run_id, rid in session.execute(
        sa.select(t.c.executed_reduction_step_id, t.c.raw_data_package_id)
        .where(_in(session, t.c.executed_reduction_step_id, ids))
    ):
        raw.setdefault(run_id, []).append(rid)
    rows = session.execute(
        sa.select(ers.id, ers.sub_group_key, ers.status, ers.started_at, ers.finished_at,
                  ers.execution_command, ers.reduction_software_version_id,
                  ers.dagster_run_id, ers.hpc_backend, ers.hpc_job_id, ers.container_runtime,
                  ReductionStep.name, Pipeline.name, ReductionStepConfig.name,
                  ReductionStepConfig.content_hash, ReductionStepConfig.id, User.username)
        .join(ReductionStep, ReductionStep.id == ers.reduction_step_id)
        .join(Pipeline, Pipeline.id == ReductionStep.pipeline_id)
        .outerjoin(User, User.id == Pipeline.created_by_user_id)
        .join(ReductionStepConfig, ReductionStepConfig.id == ers.reduction_step_config_id)
        .where(_in(session, ers.id, ids)))
    for (rid, key, status, started, finished, command, version_id, dagster_id, backend,
         job_id, runtime, step, pipeline, config_name, config_hash, config_id, creator) in rows:
        graph.runs[rid] = RunNode(
            id=rid, pipeline=pipeline, step=step, sub_group_key=key, status=str(status),
            started_at=started, finished_at=finished, command=tuple(command or ()),
            software_version_id=version_id, config_name=config_name,
            config_hash=config_hash, config_id=config_id, created_by=creator,
            dagster_run_id=dagster_id, hpc_backend=backend,
            hpc_job_id=job_id, container_runtime=runtime,
            input_product_ids=tuple(sorted(inputs.get(rid, ()))),
            input_raw_data_package_ids=tuple(sorted(raw.get(rid, ()))))


def _load_raw(session: Session, graph: LineageGraph, ids: Collection[int],
              with_files: bool) -> None:
    files: dict[int, list[RawFileNode]] = {}
    if with_files:
        f = RawDataFile
        for fid, pid, rel, size, checksum in session.execute(
            sa.select(f.id, f.raw_data_package_id, f.relative_path, f.size_bytes, f.checksum)
            .where(_in(session, f.raw_data_package_id, ids)).order_by(f.relative_path)
        ):
            files.setdefault(pid, []).append(RawFileNode(fid, rel, size, checksum))
    p = RawDataPackage
    for pid, name, checksum, size, rel in session.execute(
        sa.select(p.id, p.name, p.checksum, p.size_bytes, p.relative_path)
        .where(_in(session, p.id, ids))
    ):
        graph.raw_packages[pid] = RawPackageNode(
            id=pid, name=name, checksum=checksum, size_bytes=size, relative_path=rel,
            files=tuple(files.get(pid, ())))


def _load_software(session: Session, graph: LineageGraph, ids: Collection[int]) -> None:
    v = ReductionSoftwareVersion
    for vid, version, image, digest, name, repository in session.execute(
        sa.select(v.id, v.version, v.image_ref, v.digest, ReductionSoftware.name,
                  ReductionSoftware.github_repo_url)
        .join(ReductionSoftware, ReductionSoftware.id == v.reduction_software_id)
        .where(_in(session, v.id, ids))
    ):
        graph.software[vid] = SoftwareNode(id=vid, name=name, version=version, image=image,
                                           digest=digest, repository=repository)


def _load_configs(session: Session, graph: LineageGraph, ids: Collection[int]) -> None:
    c = ReductionStepConfig
    for cid, name, content_hash, params, env, resources in session.execute(
        sa.select(c.id, c.name, c.content_hash, c.config_parameters, c.environment_variables,
                  c.resource_requirements)
        .where(_in(session, c.id, ids))
    ):
        graph.configs[cid] = ConfigNode(
            id=cid, name=name, content_hash=content_hash, parameters=dict(params or {}),
            environment_variables=dict(env or {}), resource_requirements=dict(resources or {}))
