"""Path safety: nothing a spec, manifest or sub-group value says may escape its directory."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path, PurePosixPath


class UnsafePath(ValueError):
    """A path that is absolute, climbs out with ``..``, or holds control characters."""


#: ASCII control characters (NUL included): never part of a path a spec or manifest names.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f]")


def safe_relative_path(text: str) -> PurePosixPath:
    """``text`` as a relative POSIX path that stays inside whatever directory it is joined to."""
    if not text or _CONTROL_CHARACTERS.search(text):
        raise UnsafePath(f"{text!r} is empty or holds control characters")
    path = PurePosixPath(text)
    if path.is_absolute():
        raise UnsafePath(f"{text!r} is absolute; a relative path is required")
    if ".." in path.parts:
        raise UnsafePath(f"{text!r} climbs out of its directory with '..'")
    return path


def join_inside(base: Path, relative: str) -> Path:
    """``base / relative`` resolved, refusing anything that would resolve outside ``base``.

    Why not ``(base / relative).resolve()``: that walks every component from ``/`` again,
    and a batch joins a dozen paths per member (staging, run layouts, links). ``relative``
    holds no ``..`` (:func:`safe_relative_path`), so only a symbolic link among its own
    components can lead elsewhere: those are looked at one by one, and a path through a link
    is resolved in full and checked against ``base``'s real path.
    """
    parts = safe_relative_path(relative).parts
    root = os.path.realpath(base)
    path = root
    for index, part in enumerate(parts):
        path = os.path.join(path, part)
        if os.path.islink(path):
            path = os.path.realpath(os.path.join(path, *parts[index + 1:]))
            if path != root and not path.startswith(root.rstrip(os.sep) + os.sep):
                raise UnsafePath(f"{relative!r} resolves outside {root}")
            break
    return Path(path)


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
