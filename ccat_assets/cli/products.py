"""``ccat-wm products / lineage``: what was made, by which run, from which raw data.

Every command prints a readable table or tree by default and the same information as JSON
with ``--json``, for tools.
"""

from __future__ import annotations

from typing import Any

import click

from ccat_assets.cli.common import echo_json, opsdb_session
from ccat_assets.opsdb import DataProductType
from ccat_assets.results.prov_export import FORMATS as PROV_FORMATS
from ccat_assets.results.prov_export import dumps as prov_dumps
from ccat_assets.results.provenance import (
    UnknownName,
    UnknownPackage,
    UnknownProduct,
    list_products,
    load_lineage,
    products_using,
    raw_ancestry,
    render_tree,
    resolve_package,
)

JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for tools.")
LIMIT = click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True,
                     help="At most this many rows, newest first.")


def _choice(enum_cls: type) -> click.Choice:
    return click.Choice([m.value for m in enum_cls], case_sensitive=False)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


@click.command()
@click.option("--pipeline", "-p", help="Only products of this pipeline.")
@click.option("--step", "-s", help="Only products of this step.")
@click.option("--sub-group", "-k", help="Only products of this sub-group key.")
@click.option("--type", "-t", "product_type", type=_choice(DataProductType),
              help="Only products of this type.")
@LIMIT
@JSON
def products(pipeline: str | None, step: str | None, sub_group: str | None,
             product_type: str | None, limit: int, as_json: bool) -> None:
    """List data products with their run, checksum and where their copies are."""
    with opsdb_session() as session:
        try:
            rows = list_products(session, pipeline=pipeline, step=step, sub_group=sub_group,
                                 product_type=DataProductType(product_type.upper())
                                 if product_type else None, limit=limit)
        except UnknownName as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no products match")
        return
    for r in rows:
        state = ",".join(sorted({c["status"].lower() for c in r["copies"]})) or "no copy"
        click.echo(f"{r['id']:>7} {r['type']:12} {_size(r['size_bytes']):>10} {state:9} "
                   f"{r['pipeline']}/{r['step']} {r['sub_group_key']} run {r['run_id']} "
                   f"{r['relative_path']}")


@click.command()
@click.argument("product_id", type=int, required=False)
@click.option("--raw", "raw_package", metavar="PACKAGE",
              help="Reverse: every product made from this raw package (id or name).")
@click.option("--format", "fmt", type=click.Choice(["tree", "json", *PROV_FORMATS]),
              default="tree", show_default=True,
              help="tree or json (this tool's), or W3C PROV: prov-json, provn, or dot "
                   "(Graphviz text: pipe it to `dot -Tpng` for a picture).")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--no-files", is_flag=True, help="Leave raw files out of the tree/exports.")
def lineage(product_id: int | None, raw_package: str | None, fmt: str, as_json: bool,
            no_files: bool) -> None:
    """Provenance of PRODUCT_ID down to raw packages and files, or with --raw, everything
    a raw package went into (what to recompute when it turns out bad)."""
    if (product_id is None) == (raw_package is None):
        raise click.UsageError("give either PRODUCT_ID or --raw PACKAGE")
    fmt = "json" if as_json else fmt
    with opsdb_session() as session:
        try:
            if raw_package is not None:
                if fmt in PROV_FORMATS:
                    raise click.UsageError(f"--format {fmt} needs a PRODUCT_ID")
                _reverse(products_using(session, resolve_package(session, raw_package)),
                         fmt == "json")
                return
            graph = load_lineage(session, product_id, with_files=not no_files)
            ancestry = raw_ancestry(session, product_id) if fmt == "json" else []
        except (UnknownProduct, UnknownPackage) as exc:
            raise click.ClickException(str(exc)) from exc
    if fmt in PROV_FORMATS:
        click.echo(prov_dumps(graph, fmt))
    elif fmt == "json":
        echo_json({**graph.to_json(), "raw_ancestry": ancestry})
    else:
        click.echo(render_tree(graph))


def _reverse(affected: Any, as_json: bool) -> None:
    if as_json:
        echo_json({"raw_data_package": affected.package, "products": affected.products,
                   "recompute": affected.pairs})
        return
    pkg = affected.package
    click.echo(f"raw package {pkg['id']} {pkg['name']}: used by {len(affected.products)} "
               f"product(s)")
    for p in affected.products:
        flag = "current" if p["current"] else "superseded"
        click.echo(f"  product {p['id']:>7} {p['type']:12} {p['pipeline']}/{p['step']} "
                   f"{p['sub_group_key']} run {p['run_id']} ({flag}) {p['relative_path']}")
    if affected.pairs:
        click.echo("to recompute (step, sub-group whose current result used it):")
        for pair in affected.pairs:
            click.echo(f"  {pair['pipeline']}/{pair['step']} {pair['sub_group_key']} "
                       f"(run {pair['run_id']}, {pair['products']} product(s))")
