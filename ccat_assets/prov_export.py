"""A product's lineage as W3C PROV-JSON (https://www.w3.org/submissions/prov-json/).

Entities are the raw packages (as collections of their raw files), the raw files and the data
products, all with checksums; activities are the runs, with times, status and the exact
command (argv as a JSON string: PROV attribute lists are unordered sets); agents are the
software versions with their images and digests. Relations: ``used`` (run -> its raw packages
and upstream products), ``wasGeneratedBy``, ``wasAssociatedWith`` (run -> software) and
``wasDerivedFrom`` (product -> each input of its run), plus ``hadMember`` (package -> file).

Written by hand from the lineage graph so the running system needs no PROV library; the
tests load every export with the ``prov`` package to keep it honest.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from ccat_assets.provenance.graph import LineageGraph, ProductNode, RunNode

#: Namespace of the workflow manager's identifiers and attributes.
CCAT_NAMESPACE = "https://ccatobservatory.org/ns/workflow-manager#"
PREFIXES = {"ccat": CCAT_NAMESPACE, "xsd": "http://www.w3.org/2001/XMLSchema#"}


def _qname(value: str) -> dict[str, str]:
    return {"$": value, "type": "prov:QUALIFIED_NAME"}


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def product_id(pid: int) -> str:
    return f"ccat:product-{pid}"


def run_id(rid: int) -> str:
    return f"ccat:run-{rid}"


def package_id(pid: int) -> str:
    return f"ccat:raw-package-{pid}"


def file_id(fid: str) -> str:
    return f"ccat:raw-file-{_safe(fid)}"


def software_id(name: str, version: str) -> str:
    return f"ccat:software-{_safe(name)}-{_safe(version)}"


def _time(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _drop_none(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if v is not None}


class _Relations:
    """Blank-node ids for relation records, unique within one document."""

    def __init__(self) -> None:
        self.counter = 0

    def add(self, document: dict[str, Any], kind: str, record: dict[str, Any]) -> None:
        self.counter += 1
        document.setdefault(kind, {})[f"_:{kind}{self.counter}"] = record


def to_prov_json(graph: LineageGraph) -> dict[str, Any]:
    """The PROV-JSON document (a dict; ``json.dumps`` it) of ``graph``."""
    doc: dict[str, Any] = {"prefix": dict(PREFIXES)}
    rel = _Relations()
    _agents(doc, graph)
    _raw(doc, rel, graph)
    for product in graph.products.values():
        _product(doc, rel, product, graph)
    for run in graph.runs.values():
        _activity(doc, rel, run, graph)
    return doc


def dumps(graph: LineageGraph) -> str:
    return json.dumps(to_prov_json(graph), indent=2, sort_keys=True)


def _agents(doc: dict[str, Any], graph: LineageGraph) -> None:
    for sw in graph.software.values():
        doc.setdefault("agent", {})[software_id(sw.name, sw.version)] = _drop_none({
            "prov:type": _qname("prov:SoftwareAgent"),
            "prov:label": f"{sw.name} {sw.version}",
            "ccat:software": sw.name, "ccat:version": sw.version, "ccat:image": sw.image,
            "ccat:imageDigest": sw.digest,
        })


def _raw(doc: dict[str, Any], rel: _Relations, graph: LineageGraph) -> None:
    entities = doc.setdefault("entity", {})
    for package in graph.raw_packages.values():
        entities[package_id(package.id)] = {
            "prov:type": _qname("prov:Collection"), "prov:label": package.name,
            "ccat:kind": "RawDataPackage", "ccat:checksum": package.checksum,
            "ccat:sizeBytes": package.size_bytes, "ccat:relativePath": package.relative_path,
        }
        for f in package.files:
            entities[file_id(f.id)] = {
                "prov:label": f.relative_path, "ccat:kind": "RawDataFile",
                "ccat:checksum": f.checksum, "ccat:sizeBytes": f.size_bytes,
            }
            rel.add(doc, "hadMember", {"prov:collection": package_id(package.id),
                                       "prov:entity": file_id(f.id)})


def _product(doc: dict[str, Any], rel: _Relations, product: ProductNode,
             graph: LineageGraph) -> None:
    doc.setdefault("entity", {})[product_id(product.id)] = _drop_none({
        "prov:label": product.relative_path, "ccat:kind": "DataProduct",
        "ccat:productType": product.product_type, "ccat:format": product.format,
        "ccat:checksum": product.checksum, "ccat:sizeBytes": product.size_bytes,
        "ccat:createdAt": _time(product.created_at),
    })
    run = graph.runs[product.run_id]
    rel.add(doc, "wasGeneratedBy", _drop_none({
        "prov:entity": product_id(product.id), "prov:activity": run_id(run.id),
        "prov:time": _time(run.finished_at)}))
    inputs = [product_id(p) for p in run.input_product_ids]
    inputs += [package_id(r) for r in run.input_raw_data_package_ids]
    for used in inputs:
        rel.add(doc, "wasDerivedFrom", {"prov:generatedEntity": product_id(product.id),
                                        "prov:usedEntity": used,
                                        "prov:activity": run_id(run.id)})


def _activity(doc: dict[str, Any], rel: _Relations, run: RunNode,
              graph: LineageGraph) -> None:
    doc.setdefault("activity", {})[run_id(run.id)] = _drop_none({
        "prov:label": f"{run.pipeline}/{run.step} {run.sub_group_key}",
        "prov:startTime": _time(run.started_at), "prov:endTime": _time(run.finished_at),
        "ccat:pipeline": run.pipeline, "ccat:step": run.step,
        "ccat:subGroupKey": run.sub_group_key, "ccat:status": run.status,
        "ccat:command": json.dumps(list(run.command)),
        "ccat:config": run.config_name, "ccat:configHash": run.config_hash,
        "ccat:dagsterRunId": run.dagster_run_id, "ccat:hpcBackend": run.hpc_backend,
        "ccat:hpcJobId": run.hpc_job_id, "ccat:containerRuntime": run.container_runtime,
    })
    sw = graph.software.get(run.software_version_id)
    if sw is not None:
        rel.add(doc, "wasAssociatedWith", {"prov:activity": run_id(run.id),
                                           "prov:agent": software_id(sw.name, sw.version)})
    for pid in run.input_product_ids:
        rel.add(doc, "used", {"prov:activity": run_id(run.id), "prov:entity": product_id(pid)})
    for rid in run.input_raw_data_package_ids:
        rel.add(doc, "used", {"prov:activity": run_id(run.id), "prov:entity": package_id(rid)})
