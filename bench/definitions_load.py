"""Benchmark: what leaving out a broken pipeline costs the code location's load.

The code location builds each pipeline's parts on its own and resolves the assembled
location once (``ccat_assets.codelocation.location.assemble``); only when that fails does it
resolve the pipelines one by one to find the one to leave out. This times, on the demo catalog
(``examples/chai/pipelines.yaml``) and on renamed copies of it for larger catalogs: all
pipelines built into one ``Definitions`` and resolved (what loading did before), ``assemble``
on the healthy catalog, and ``assemble`` with one more pipeline that only Dagster's
resolution refuses (the slow path). No database: the catalog comes from the spec. Prints one
JSON document.

    python bench/definitions_load.py --sizes 2,20,100 --repeats 5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg

from bench.machine import describe
from bench.targets import at_most, figure
from ccat_assets.codelocation import location
from ccat_assets.codelocation.location import (
    _definitions,
    _resolve,
    assemble,
    build_parts,
    default_resources,
)
from ccat_assets.dagster_face.catalog import PipelineDef, pipeline_def_from_spec
from ccat_assets.settings import get_settings
from ccat_assets.specs.spec import validate_spec_files

DEMO_SPEC = Path(__file__).resolve().parents[1] / "examples" / "chai" / "pipelines.yaml"
#: Per pipeline, a healthy location may load this much slower than all at once (ms).
TARGET_ADDED_MS_PER_PIPELINE = 2.0


def demo_catalog() -> list[PipelineDef]:
    spec_set = validate_spec_files([DEMO_SPEC])
    return [pipeline_def_from_spec(p, processing_location_id=1) for p in spec_set.pipelines]


def renamed(pipeline: PipelineDef, suffix: str) -> PipelineDef:
    name = f"{pipeline.name}_{suffix}"
    steps = tuple(dataclasses.replace(s, pipeline=name) for s in pipeline.steps)
    return dataclasses.replace(pipeline, name=name, steps=steps)


def catalog_of(size: int) -> list[PipelineDef]:
    demo = demo_catalog()
    if size <= len(demo):
        return demo[:size]
    return [renamed(demo[i % len(demo)], f"c{i:03d}") for i in range(size)]


def all_at_once(catalog: list[PipelineDef]) -> None:
    settings, resources = get_settings(), default_resources()
    _resolve(_definitions([build_parts(p, settings) for p in catalog], resources, []))


def isolated(catalog: list[PipelineDef]) -> None:
    result = assemble(catalog, get_settings())
    assert not result.not_loaded, result.not_loaded


def with_one_broken(catalog: list[PipelineDef]) -> None:
    """The catalog and one more pipeline that only Dagster's resolution refuses: it gets one
    more asset needing a resource nobody provides (what a rule of a later Dagster could do)."""
    broken = renamed(catalog[0], "broken")
    real = location.build_parts

    def build(pipeline: PipelineDef, settings: Any) -> location.PipelineParts:
        parts = real(pipeline, settings)
        if pipeline.name != broken.name:
            return parts

        @dg.asset(key=["ccat", pipeline.name, "needs_absent"], required_resource_keys={"absent"})
        def _needs() -> None: ...

        return dataclasses.replace(parts, assets=(*parts.assets, _needs))

    location.build_parts = build
    try:
        result = assemble([*catalog, broken], get_settings())
    finally:
        location.build_parts = real
    assert [n.pipeline for n in result.not_loaded] == [broken.name], result.not_loaded


def median_seconds(fn: Callable[[list[PipelineDef]], None], catalog: list[PipelineDef],
                   repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(catalog)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2,20,100")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    runs: list[dict[str, Any]] = []
    for size in (int(s) for s in args.sizes.split(",")):
        catalog = catalog_of(size)
        isolated(catalog)  # warm-up: imports, caches
        before = median_seconds(all_at_once, catalog, args.repeats)
        after = median_seconds(isolated, catalog, args.repeats)
        broken = median_seconds(with_one_broken, catalog, args.repeats)
        runs.append({"pipelines": size, "all_at_once_ms": round(before * 1000, 1),
                     "isolated_ms": round(after * 1000, 1),
                     "added_ms": round((after - before) * 1000, 1),
                     "added_ms_per_pipeline": round((after - before) * 1000 / size, 1),
                     "one_broken_ms": round(broken * 1000, 1)})
        print(f"{size} pipelines: {runs[-1]}", file=sys.stderr)
    worst = max(r["added_ms_per_pipeline"] for r in runs)
    print(json.dumps({
        "benchmark": "definitions_load",
        "machine": describe(),
        "runs": runs,
        "targets": [at_most("added load time per pipeline (ms)", worst,
                            TARGET_ADDED_MS_PER_PIPELINE)],
        "figures": [figure(f"load, {r['pipelines']} pipelines: before / now / one broken",
                           f"{r['all_at_once_ms']} / {r['isolated_ms']} / {r['one_broken_ms']}",
                           "ms") for r in runs],
    }, indent=2))


if __name__ == "__main__":
    main()
