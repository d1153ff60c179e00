"""The lineage graph as a text tree for people: product -> run -> inputs -> raw files.

A run, product or raw package reached a second time (shared inputs) is printed once and
then referred to as "(see above)", so the tree stays as long as the graph is large.
"""

from __future__ import annotations

from collections.abc import Iterator

from ccat_assets.results.provenance.graph import LineageGraph, ProductNode, RawPackageNode, RunNode


def _short(checksum: str) -> str:
    algo, _, digest = checksum.partition(":")
    return f"{algo}:{digest[:12]}" if digest else checksum


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _product_line(p: ProductNode) -> str:
    where = ", ".join(sorted({f"{c.status.lower()} at {c.location}" for c in p.copies}))
    return (f"product {p.id} {p.relative_path} [{p.product_type}] {_short(p.checksum)} "
            f"{_size(p.size_bytes)}" + (f" ({where})" if where else ""))


def _run_line(run: RunNode, graph: LineageGraph) -> str:
    sw = graph.software.get(run.software_version_id)
    software = f"{sw.name} {sw.version}" if sw else "?"
    when = run.finished_at.isoformat(timespec="seconds") if run.finished_at else "-"
    return (f"made by run {run.id}: {run.pipeline}/{run.step} {run.sub_group_key} "
            f"{run.status} {when} with {software}")


def _package_line(p: RawPackageNode) -> str:
    return f"raw package {p.id} {p.name} {_short(p.checksum)} {_size(p.size_bytes)}"


def render_tree(graph: LineageGraph) -> str:
    return "\n".join(_lines(graph))


def _lines(graph: LineageGraph) -> Iterator[str]:
    seen: set[tuple[str, int]] = set()
    root = graph.products[graph.root]
    yield _product_line(root)
    yield from _product_children(graph, root, "", seen)


def _product_children(graph: LineageGraph, product: ProductNode, indent: str,
                      seen: set[tuple[str, int]]) -> Iterator[str]:
    run = graph.runs[product.run_id]
    if ("run", run.id) in seen:
        yield f"{indent}└─ made by run {run.id} (see above)"
        return
    seen.add(("run", run.id))
    yield f"{indent}└─ {_run_line(run, graph)}"
    child_indent = indent + "   "
    children: list[tuple[str, int]] = [("product", p) for p in run.input_product_ids]
    children += [("raw", r) for r in run.input_raw_data_package_ids]
    for i, (kind, node_id) in enumerate(children):
        last = i == len(children) - 1
        branch, more = ("└─ ", "   ") if last else ("├─ ", "│  ")
        if kind == "product":
            product_node = graph.products[node_id]
            if ("product", node_id) in seen:
                yield f"{child_indent}{branch}product {node_id} (see above)"
                continue
            seen.add(("product", node_id))
            yield f"{child_indent}{branch}{_product_line(product_node)}"
            yield from _product_children(graph, product_node, child_indent + more, seen)
        else:
            package = graph.raw_packages[node_id]
            if ("raw", node_id) in seen:
                yield f"{child_indent}{branch}raw package {node_id} {package.name} (see above)"
                continue
            seen.add(("raw", node_id))
            yield f"{child_indent}{branch}{_package_line(package)}"
            for j, f in enumerate(package.files):
                fbranch = "└─ " if j == len(package.files) - 1 else "├─ "
                yield (f"{child_indent}{more}{fbranch}file {f.relative_path} "
                       f"{_short(f.checksum)} {_size(f.size_bytes)}")
