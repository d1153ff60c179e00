"""Small inline previews of PLOT products, for a materialization a person reads.

Why a data URI with a hard limit: the UI shows markdown metadata inline, so a quicklook is
seen without leaving the run's page, but every byte lands in Dagster's event log, once per
materialization, for ever. So each image is shrunk to at most :data:`MAX_SIDE` pixels, reduced
to a 256-colour palette (plots are mostly flat colour), and embedded only when its markdown is
at most :data:`MAX_ENCODED_BYTES`; otherwise the metadata says why it is not shown. A file
too large to open, not an image, or unreadable is a note, never an error: a preview must not
fail the run it decorates.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

#: Longest side of a thumbnail, in pixels.
MAX_SIDE = 256
#: Most bytes of one thumbnail's markdown (the base64 data URI included).
MAX_ENCODED_BYTES = 32 * 1024
#: Thumbnails per materialization; further plots are counted, not shown.
MAX_THUMBNAILS = 3
#: Files larger than this are not opened (the source of a preview, not of a science product).
MAX_SOURCE_BYTES = 64 * 1024 * 1024
#: Formats Pillow reads that a plot is written in.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Thumbnail:
    """Markdown for one plot: the embedded image, or a sentence saying why there is none."""

    markdown: str
    embedded: bool


def thumbnail(path: Path, title: str, *, max_bytes: int = MAX_ENCODED_BYTES,
              max_side: int = MAX_SIDE) -> Thumbnail:
    """The markdown of ``path``'s thumbnail, ``![title](data:image/png;base64,...)``, or a
    note when it cannot or must not be embedded."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return Thumbnail(f"`{title}`: no preview ({path.suffix or 'no suffix'} is not an "
                         "image format)", False)
    try:
        size = path.stat().st_size
        if size > MAX_SOURCE_BYTES:
            return Thumbnail(f"`{title}`: no preview (the file is {size} bytes, more than "
                             f"{MAX_SOURCE_BYTES} are not opened)", False)
        png = _shrunk_png(path, max_side)
    except ImportError:
        return Thumbnail(f"`{title}`: no preview (Pillow is not installed)", False)
    except Exception as exc:  # noqa: BLE001 - any unreadable image is a note, not a failure
        return Thumbnail(f"`{title}`: no preview ({type(exc).__name__}: {exc})", False)
    markdown = f"![{_alt(title)}](data:image/png;base64,{base64.b64encode(png).decode()})"
    if len(markdown) > max_bytes:
        return Thumbnail(f"`{title}`: no preview (the {max_side} px thumbnail is "
                         f"{len(markdown)} bytes encoded, over the limit of {max_bytes})", False)
    return Thumbnail(markdown, True)


def _shrunk_png(path: Path, max_side: int) -> bytes:
    from PIL import Image  # a runtime dependency; imported here so a missing one is a note

    with Image.open(path) as image:
        image.thumbnail((max_side, max_side))
        small = image.convert("RGBA").quantize(colors=256)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _alt(title: str) -> str:
    """Alt text that cannot end the markdown image early."""
    return "".join(c for c in title if c not in "[]()\n\r") or "plot"
