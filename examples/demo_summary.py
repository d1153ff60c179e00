"""The demo's closing summary: runs by step and status, products by type, the lineage of one
final map down to its raw packages, and the path of its quicklook PNG. The last line is JSON
(``{"failed": N, ...}``) for the demo driver."""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

import sqlalchemy as sa

from ccat_assets.opsdb import (
    DataProduct,
    DataProductType,
    ExecutedReductionStep,
    Pipeline,
    ReductionStep,
    RunStatus,
)
from ccat_assets.opsdb.session import session_scope
from ccat_assets.results.provenance.graph import load_lineage
from ccat_assets.results.provenance.tree import render_tree


def main(pipeline_name: str) -> None:
    with session_scope() as s:
        runs = s.execute(
            sa.select(ReductionStep.name, ExecutedReductionStep.status, ExecutedReductionStep.id,
                      ExecutedReductionStep.sub_group_key, ExecutedReductionStep.dagster_run_id)
            .join(ExecutedReductionStep.step).join(Pipeline)
            .where(Pipeline.name == pipeline_name).order_by(ExecutedReductionStep.id)).all()
        by_step = collections.Counter((r.name, r.status.value) for r in runs)
        print("runs by step and status:")
        for (step, status), n in sorted(by_step.items()):
            print(f"  {step:12} {status:10} {n:4d}")
        dagster_runs = collections.defaultdict(set)
        for r in runs:
            dagster_runs[r.name].add(r.dagster_run_id)
        print("Dagster runs by step (a batch runs many sub-groups in one run and one array job):")
        for step, ids in sorted(dagster_runs.items()):
            members = sum(1 for r in runs if r.name == step)
            print(f"  {step:12} {len(ids):4d} Dagster runs for {members} sub-group runs")
        per_key = collections.Counter((r.name, r.sub_group_key) for r in runs)
        rerun = sorted(k for k, n in per_key.items() if n > 1)
        print(f"sub-groups reduced more than once (new data touched them): {len(rerun)}")
        for step, key in rerun:
            print(f"  {step:12} {key}")
        types = s.execute(
            sa.select(DataProduct.data_product_type, sa.func.count(), sa.func.sum(
                DataProduct.size_bytes)).group_by(DataProduct.data_product_type)).all()
        print("products by type:")
        for kind, n, size in sorted(types, key=lambda t: t[0].value):
            print(f"  {kind.value:12} {n:5d} {size / 1e6:9.2f} MB")
        final = s.scalar(
            sa.select(DataProduct).join(ExecutedReductionStep)
            .where(DataProduct.data_product_type == DataProductType.SCIENCE,
                   DataProduct.name.like("%mom0%"))
            .order_by(DataProduct.id.desc()).limit(1))
        png = None
        if final is not None:
            run = final.run
            print(f"lineage of {final.name} (product {final.id}, run {run.id}, "
                  f"{run.step.name} {run.sub_group_key}):")
            print(render_tree(load_lineage(s, final.id, with_files=False)))
            png = next((Path(run.run_dir, p.relative_path) for p in run.products
                        if p.data_product_type == DataProductType.PLOT), None)
            print(f"quicklook: {png}")
        failed = sum(1 for r in runs if r.status != RunStatus.COMPLETED)
    print(json.dumps({"failed": failed, "runs": len(runs), "quicklook": str(png)}))


if __name__ == "__main__":
    main(sys.argv[1])
