"""Where upstream products appear under ``workspace/<upstream step>/``: the seed's flat
folder at the same grain, one folder per upstream sub-group otherwise, and never two
products on one path or a path outside the run."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from ccat_assets.automation.inputs import UpstreamProduct
from ccat_assets.execution.upstream_view import UpstreamViewError, build_view, plan_view
from ccat_assets.opsdb.enums import DataProductType
from ccat_assets.paths import UnsafePath
from ccat_assets.results.contract import RunLayout

SCAN1, SCAN2 = "executed_obs_unit=scan-001", "executed_obs_unit=scan-002"
GRID = "source=NGC253__line=CO43"


def _product(pid: int, relative_path: str, key: str = SCAN1, step: str = "calibrate",
             path: Path = Path("/nonexistent")) -> UpstreamProduct:
    return UpstreamProduct(id=pid, step=step, sub_group_key=key, run_id=pid,
                           product_type=DataProductType.INTERMEDIATE,
                           relative_path=relative_path, path=path, checksum="sha256:0",
                           metadata={})


def test_same_grain_is_flat_and_a_coarser_step_gets_a_folder_per_sub_group() -> None:
    flat = plan_view([_product(1, "workspace/calibrate/cal/a.fits")], SCAN1)
    assert list(flat) == [PurePosixPath("calibrate/cal/a.fits")]
    nested = plan_view([_product(1, "workspace/calibrate/a.fits", SCAN1),
                        _product(2, "workspace/calibrate/a.fits", SCAN2)], GRID)
    assert sorted(map(str, nested)) == [f"calibrate/{SCAN1}/a.fits", f"calibrate/{SCAN2}/a.fits"]


def test_products_outside_the_upstream_workspace_are_left_to_the_manifest() -> None:
    assert plan_view([_product(1, "output/science/a.fits")], SCAN1) == {}


def test_two_products_on_one_path_are_refused_naming_both() -> None:
    with pytest.raises(UpstreamViewError, match=r"workspace/calibrate/a\.fits would hold both "
                       r"product 1 .* and product 2"):
        plan_view([_product(1, "workspace/calibrate/a.fits"),
                   _product(2, "workspace/calibrate/a.fits")], SCAN1)


def test_a_file_where_another_product_needs_a_folder_is_refused() -> None:
    with pytest.raises(UpstreamViewError, match="is a file but also the folder of"):
        plan_view([_product(1, "workspace/calibrate/a"),
                   _product(2, "workspace/calibrate/a/b.fits")], SCAN1)


@pytest.mark.parametrize("relative_path", ["workspace/calibrate/../../../etc/passwd",
                                           "/workspace/calibrate/a"])
def test_hostile_product_paths_are_rejected(relative_path: str) -> None:
    with pytest.raises(UnsafePath):
        plan_view([_product(1, relative_path)], SCAN1)


def test_a_hostile_sub_group_key_cannot_leave_the_folder() -> None:
    with pytest.raises(UnsafePath):
        plan_view([_product(1, "workspace/calibrate/a", key="../../x")], GRID)


def test_build_view_links_products_and_creates_empty_folders(tmp_path: Path) -> None:
    source = tmp_path / "up" / "a.fits"
    source.parent.mkdir()
    source.write_bytes(b"data")
    layout = RunLayout(root=tmp_path / "run", step="grid")
    layout.create()
    steps = build_view(layout, ["calibrate", "baseline"],
                       [_product(1, "workspace/calibrate/a.fits", path=source)], SCAN1)
    assert steps == ["calibrate", "baseline"]
    linked = layout.workspace_root / "calibrate/a.fits"
    assert linked.read_bytes() == b"data" and linked.stat().st_ino == source.stat().st_ino
    assert (layout.workspace_root / "baseline").is_dir()  # nothing consumed: empty, present
    binds = layout.binds(steps)
    assert binds[-2:] == [
        (layout.workspace_root / "calibrate", PurePosixPath("/workflow/workspace/calibrate"),
         True),
        (layout.workspace_root / "baseline", PurePosixPath("/workflow/workspace/baseline"),
         True)]
