"""The seed contract's view of upstream intermediates: ``/workflow/workspace/<upstream step>/``.

Programs written for the CCAT seed contract share one workspace per sub-group and read the
intermediates of their upstream step at ``/workflow/workspace/<upstream step>/``. This
project gives each run its own directory and stages upstream products under
``input/products/<step>/<sub_group>/`` with a manifest, so a seed program would find nothing.
This module builds, inside the run directory, the workspace folders those programs expect:

* ``workspace/<upstream step>/`` of the run holds hard links to the upstream products the
  manifest lists (never logs, sidecars or files the collector did not record), at the path
  the upstream program wrote them below its own workspace folder;
* when the upstream sub-group is the run's own (same ``group_by``: the seed's case) the
  files sit directly in that folder; when the grains differ (many scans feed one source and
  line, or one all-data run feeds each scan) each upstream sub-group gets its own
  subfolder ``workspace/<upstream step>/<upstream sub_group_key>/``. The seed keeps each
  sub-group's workspace in a directory of its own, and every per-scan run of a step
  typically writes the same file names, so a merged folder would collide on nearly every
  file; one folder per upstream sub-group keeps them apart by construction. The choice
  depends only on the two steps' grains, never on how many sub-groups the data has today.

Two products that would land on the same path (or a file where another needs a folder)
are an error naming both, never a silent overwrite. Under Apptainer each of these folders
is also bound read-only over itself (``RunLayout.binds``), so the program cannot change
its inputs; under the ``host`` runtime, as for ``input/``, read-only is not enforced.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath

from ccat_assets.automation.inputs import UpstreamProduct
from ccat_assets.paths import join_inside, link_or_copy, safe_relative_path
from ccat_assets.results.contract import RunLayout


class UpstreamViewError(RuntimeError):
    """The upstream products cannot be laid out without two of them sharing a path."""


def view_path(product: UpstreamProduct, sub_group_key: str) -> PurePosixPath | None:
    """Where ``product`` appears below ``workspace/<its step>/`` of a run of ``sub_group_key``.

    ``None`` for a product its run did not write to its workspace folder (a step that was
    final when it ran and gained a downstream step later): the seed contract has no place
    for it, and it stays available under ``input/products/`` and in the manifest.
    """
    relative = safe_relative_path(product.relative_path)
    prefix = PurePosixPath("workspace", product.step)
    if not relative.is_relative_to(prefix) or relative == prefix:
        return None
    inside = relative.relative_to(prefix)
    if product.sub_group_key == sub_group_key:
        return inside
    return safe_relative_path(product.sub_group_key) / inside


def plan_view(products: Iterable[UpstreamProduct],
              sub_group_key: str) -> dict[PurePosixPath, UpstreamProduct]:
    """``<upstream step>/<path>`` -> product, refusing any two products on one path."""
    planned: dict[PurePosixPath, UpstreamProduct] = {}
    for product in products:
        inside = view_path(product, sub_group_key)
        if inside is None:
            continue
        target = PurePosixPath(product.step) / inside
        if target in planned:
            raise UpstreamViewError(_collision(target, planned[target], product))
        planned[target] = product
    folders = {parent: target for target in planned for parent in target.parents}
    for target, product in planned.items():
        if target in folders:
            raise UpstreamViewError(
                _collision(target, product, planned[folders[target]], as_folder=True))
    return planned


def _collision(target: PurePosixPath, first: UpstreamProduct, second: UpstreamProduct, *,
               as_folder: bool = False) -> str:
    how = "is a file but also the folder of" if as_folder else "would hold both"
    return (f"workspace/{target} {how} product {first.id} ({first.step}/{first.sub_group_key}/"
            f"{first.relative_path}) and product {second.id} ({second.step}/"
            f"{second.sub_group_key}/{second.relative_path}); rename one of them upstream")


def build_view(layout: RunLayout, upstream_steps: Sequence[str],
               products: Iterable[UpstreamProduct], sub_group_key: str) -> list[str]:
    """Create ``workspace/<upstream step>/`` of the run for every upstream step (empty when
    it recorded nothing this run consumes) and hard-link the products into it.

    Returns the upstream step names, in order, for ``RunLayout.binds``.
    """
    planned = plan_view(products, sub_group_key)
    steps = list(dict.fromkeys(upstream_steps))
    for step in steps:
        if step == layout.step:
            raise UpstreamViewError(f"step {step!r} cannot be its own upstream step")
        join_inside(layout.workspace_root, step).mkdir(parents=True, exist_ok=True)
    for target, product in sorted(planned.items()):
        link_or_copy(product.path, join_inside(layout.workspace_root, target.as_posix()))
    return steps

