"""A product's lineage as a W3C PROV document (``prov`` package), written as PROV-JSON,
PROV-N or a Graphviz DOT picture.

The document is built with the ``prov`` model rather than by hand, so every output is one
the PROV tools read back (``prov.read``), and the three formats cannot disagree.

- Entities: the raw packages (``prov:Collection`` of their raw files, ``hadMember``), the raw
  files and the data products, all with checksums; each product's copies are its
  ``prov:location`` values, as URIs (``file://`` or the location's storage URI). The step
  config of each run is an entity of type ``prov:Plan`` with its parameters.
- Activities: the runs, with times, status and the exact command (argv as a JSON string:
  PROV attribute values are unordered sets, an argv is not).
- Agents: the software versions (``prov:SoftwareAgent``: image, digest, repository), and the
  person who created the pipeline (``prov:Person``), when the spec names one.
- Relations: ``used`` (run -> its raw packages and upstream products), ``wasGeneratedBy``,
  ``wasDerivedFrom`` (product -> each input of its run), ``wasInformedBy`` (run -> the runs
  whose products it used), ``wasAssociatedWith`` (run -> software, with the config as plan;
  run -> pipeline creator), ``actedOnBehalfOf`` (software -> creator, for that run) and
  ``wasAttributedTo`` (product -> creator).
"""

from __future__ import annotations

import json
import re
from typing import Any

from prov.identifier import Identifier, Namespace
from prov.model import PROV, ProvDocument

from ccat_assets.results.provenance.graph import ConfigNode, LineageGraph, ProductNode, RunNode

#: Namespace of the workflow manager's identifiers and attributes.
CCAT_NAMESPACE = "https://ccatobservatory.org/ns/workflow-manager#"
CCAT = Namespace("ccat", CCAT_NAMESPACE)
#: The formats ``ccat-wm lineage --format`` writes with this module.
FORMATS = ("prov-json", "provn", "dot")


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


def config_id(cid: int) -> str:
    return f"ccat:config-{cid}"


def person_id(username: str) -> str:
    return f"ccat:person-{_safe(username)}"


def _attrs(**values: Any) -> dict[str, Any]:
    """``ccat:`` attributes, leaving out the unknown (``None``) ones."""
    return {f"ccat:{k}": v for k, v in values.items() if v is not None}


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def to_prov_document(graph: LineageGraph) -> ProvDocument:
    """The PROV document of ``graph``."""
    doc = ProvDocument()
    doc.add_namespace(CCAT)
    for sw in sorted(graph.software.values(), key=lambda s: s.id):
        doc.agent(software_id(sw.name, sw.version), {
            PROV["type"]: PROV["SoftwareAgent"], PROV["label"]: f"{sw.name} {sw.version}",
            **_attrs(software=sw.name, version=sw.version, image=sw.image,
                     imageDigest=sw.digest,
                     repository=Identifier(sw.repository) if sw.repository else None),
        })
    for person in sorted({r.created_by for r in graph.runs.values() if r.created_by}):
        doc.agent(person_id(person), {PROV["type"]: PROV["Person"], PROV["label"]: person,
                                      **_attrs(username=person)})
    for config in sorted(graph.configs.values(), key=lambda c: c.id):
        _plan(doc, config)
    _raw(doc, graph)
    for product in sorted(graph.products.values(), key=lambda p: p.id):
        _product(doc, product, graph)
    for run in sorted(graph.runs.values(), key=lambda r: r.id):
        _activity(doc, run, graph)
    return doc


def to_prov_json(graph: LineageGraph) -> dict[str, Any]:
    """The PROV-JSON document of ``graph`` as a dict."""
    return json.loads(to_prov_document(graph).serialize(format="json"))


def dumps(graph: LineageGraph, fmt: str = "prov-json") -> str:
    """``graph`` as text in one of :data:`FORMATS`."""
    doc = to_prov_document(graph)
    if fmt == "prov-json":
        return json.dumps(json.loads(doc.serialize(format="json")), indent=2, sort_keys=True)
    if fmt == "provn":
        return doc.get_provn()
    if fmt == "dot":
        from prov.dot import prov_to_dot  # imports pydot and networkx: only when drawing

        return str(prov_to_dot(doc).to_string())
    raise ValueError(f"unknown PROV format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _plan(doc: ProvDocument, config: ConfigNode) -> None:
    doc.entity(config_id(config.id), {
        PROV["type"]: PROV["Plan"], PROV["label"]: config.name,
        **_attrs(kind="ReductionStepConfig", configName=config.name,
                 configHash=config.content_hash, parameters=_json(config.parameters),
                 resourceRequirements=_json(config.resource_requirements)),
    })


def _raw(doc: ProvDocument, graph: LineageGraph) -> None:
    for package in sorted(graph.raw_packages.values(), key=lambda p: p.id):
        collection = doc.collection(package_id(package.id), {
            PROV["label"]: package.name,
            **_attrs(kind="RawDataPackage", checksum=package.checksum,
                     sizeBytes=package.size_bytes, relativePath=package.relative_path),
        })
        for f in package.files:
            doc.entity(file_id(f.id), {
                PROV["label"]: f.relative_path,
                **_attrs(kind="RawDataFile", checksum=f.checksum, sizeBytes=f.size_bytes),
            })
            doc.membership(collection, file_id(f.id))


def _product(doc: ProvDocument, product: ProductNode, graph: LineageGraph) -> None:
    attributes: list[tuple[Any, Any]] = [
        (PROV["label"], product.relative_path),
        *_attrs(kind="DataProduct", productType=product.product_type, format=product.format,
                checksum=product.checksum, sizeBytes=product.size_bytes,
                createdAt=product.created_at).items(),
    ]
    # A product may have copies at several locations: prov:location takes several values.
    attributes += [(PROV["location"], Identifier(c.uri)) for c in product.copies if c.uri]
    doc.entity(product_id(product.id), attributes)
    run = graph.runs[product.run_id]
    doc.generation(product_id(product.id), run_id(run.id), run.finished_at)
    inputs = [product_id(p) for p in run.input_product_ids]
    inputs += [package_id(r) for r in run.input_raw_data_package_ids]
    for used in inputs:
        doc.derivation(product_id(product.id), used, activity=run_id(run.id))
    if run.created_by:
        doc.attribution(product_id(product.id), person_id(run.created_by))


def _activity(doc: ProvDocument, run: RunNode, graph: LineageGraph) -> None:
    doc.activity(run_id(run.id), run.started_at, run.finished_at, {
        PROV["label"]: f"{run.pipeline}/{run.step} {run.sub_group_key}",
        **_attrs(pipeline=run.pipeline, step=run.step, subGroupKey=run.sub_group_key,
                 status=run.status, command=json.dumps(list(run.command)),
                 config=run.config_name, configHash=run.config_hash,
                 dagsterRunId=run.dagster_run_id, hpcBackend=run.hpc_backend,
                 hpcJobId=run.hpc_job_id, containerRuntime=run.container_runtime),
    })
    plan = config_id(run.config_id) if run.config_id in graph.configs else None
    sw = graph.software.get(run.software_version_id)
    if sw is not None:
        doc.association(run_id(run.id), software_id(sw.name, sw.version), plan)
    if run.created_by:
        doc.association(run_id(run.id), person_id(run.created_by))
        if sw is not None:
            doc.delegation(software_id(sw.name, sw.version), person_id(run.created_by),
                           run_id(run.id))
    for pid in run.input_product_ids:
        doc.usage(run_id(run.id), product_id(pid))
    for rid in run.input_raw_data_package_ids:
        doc.usage(run_id(run.id), package_id(rid))
    informants = sorted({graph.products[pid].run_id for pid in run.input_product_ids
                         if pid in graph.products})
    for informant in informants:
        doc.communication(run_id(run.id), run_id(informant))
