"""Provenance: lineage queries over the ops-db, listings, and the lineage tree.

``ancestry`` answers the two frequent questions in one indexed query each; ``graph`` loads the
full provenance of a product for the tree, its JSON and the W3C PROV export
(:mod:`ccat_assets.results.prov_export`); ``verify`` holds the product checks the Dagster asset
checks run; ``listing`` serves ``ccat-wm products`` and ``ccat-wm runs``.
"""

from ccat_assets.results.provenance.ancestry import (
    Affected,
    UnknownPackage,
    products_using,
    raw_ancestry,
    resolve_package,
)
from ccat_assets.results.provenance.graph import LineageGraph, UnknownProduct, load_lineage
from ccat_assets.results.provenance.listing import UnknownName, list_products, list_runs
from ccat_assets.results.provenance.tree import render_tree

__all__ = [
    "Affected",
    "LineageGraph",
    "UnknownName",
    "UnknownPackage",
    "UnknownProduct",
    "list_products",
    "list_runs",
    "load_lineage",
    "products_using",
    "raw_ancestry",
    "render_tree",
    "resolve_package",
]
