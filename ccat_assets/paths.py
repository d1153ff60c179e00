"""Path safety: nothing a spec, manifest or sub-group value says may escape its directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath


class UnsafePath(ValueError):
    """A path that is absolute, climbs out with ``..``, or holds control characters."""


def safe_relative_path(text: str) -> PurePosixPath:
    """``text`` as a relative POSIX path that stays inside whatever directory it is joined to."""
    if not text or "\x00" in text or any(ord(c) < 32 for c in text):
        raise UnsafePath(f"{text!r} is empty or holds control characters")
    path = PurePosixPath(text)
    if path.is_absolute():
        raise UnsafePath(f"{text!r} is absolute; a relative path is required")
    if any(part == ".." for part in path.parts):
        raise UnsafePath(f"{text!r} climbs out of its directory with '..'")
    return path


def join_inside(base: Path, relative: str) -> Path:
    """``base / relative``, refusing anything that would resolve outside ``base``."""
    candidate = (base / safe_relative_path(relative)).resolve()
    root = base.resolve()
    if candidate != root and root not in candidate.parents:
        raise UnsafePath(f"{relative!r} resolves outside {root}")
    return candidate


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (same filesystem), else copy; atomic via rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.partial")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)
