"""``join_inside`` and ``safe_relative_path``: nothing a spec, manifest or sub-group value
names may lead out of its directory, through ``..``, an absolute path or a symbolic link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ccat_assets.paths import UnsafePath, join_inside, safe_relative_path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``base/`` with a file, a folder, a link to a folder inside and links leading out; the
    base itself reached through a link (``via``), as a scratch file system often is."""
    base = tmp_path / "real" / "base"
    (base / "folder" / "deeper").mkdir(parents=True)
    (base / "folder" / "file.fits").write_text("x")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("s")
    (base / "inside_link").symlink_to(base / "folder")
    (base / "relative_inside_link").symlink_to("folder/deeper")
    (base / "out_link").symlink_to(tmp_path / "outside")
    (base / "folder" / "climbing_link").symlink_to("../../../outside")
    (tmp_path / "via").symlink_to(tmp_path / "real")
    return tmp_path


CASES_INSIDE = ["folder", "folder/file.fits", "folder/deeper", "not/yet/there.fits",
                "inside_link/file.fits", "relative_inside_link", "relative_inside_link/new",
                "./folder", "folder//file.fits", "."]
CASES_OUTSIDE = ["out_link", "out_link/secret", "folder/climbing_link/secret"]


@pytest.mark.parametrize("relative", CASES_INSIDE)
@pytest.mark.parametrize("through_link", [False, True])
def test_a_path_inside_is_what_resolving_it_gives(tree: Path, relative: str,
                                                  through_link: bool) -> None:
    base = tree / ("via" if through_link else "real") / "base"
    joined = join_inside(base, relative)
    assert joined == (base / relative).resolve()
    assert str(joined).startswith(str((tree / "real" / "base").resolve()))


@pytest.mark.parametrize("relative", CASES_OUTSIDE)
def test_a_link_leading_out_is_refused(tree: Path, relative: str) -> None:
    base = tree / "via" / "base"
    with pytest.raises(UnsafePath, match="resolves outside"):
        join_inside(base, relative)
    assert not (base / relative).resolve().is_relative_to((tree / "real" / "base").resolve())


def test_a_base_whose_name_is_a_prefix_of_the_target_is_no_way_out(tmp_path: Path) -> None:
    """``/x/base`` does not contain ``/x/base-other``: the check compares whole components."""
    (tmp_path / "base").mkdir()
    (tmp_path / "base-other").mkdir()
    (tmp_path / "base" / "sibling").symlink_to(tmp_path / "base-other")
    with pytest.raises(UnsafePath, match="resolves outside"):
        join_inside(tmp_path / "base", "sibling/file")


@pytest.mark.parametrize("text, reason", [
    ("", "empty"), ("/etc/passwd", "absolute"), ("a/../../b", "climbs out"),
    ("..", "climbs out"), ("a\x00b", "control"), ("a\nb", "control"), ("a\x1fb", "control"),
])
def test_unsafe_text_is_refused_before_any_file_is_looked_at(tmp_path: Path, text: str,
                                                              reason: str) -> None:
    with pytest.raises(UnsafePath, match=reason):
        safe_relative_path(text)
    with pytest.raises(UnsafePath):
        join_inside(tmp_path / "missing", text)
    assert not os.path.exists(tmp_path / "missing")


def test_names_that_only_look_unusual_are_accepted() -> None:
    assert safe_relative_path("scan..001/a b/ü.fits").parts == ("scan..001", "a b", "ü.fits")
