"""Quicklook previews: shrunk and embedded within the byte limit, or a note saying why not;
never an error. Real images written with Pillow; no services."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

from PIL import Image

from ccat_assets.results.thumbnails import MAX_ENCODED_BYTES, MAX_SIDE, thumbnail


def _png(path: Path, size: tuple[int, int], noise: bool = False) -> Path:
    if noise:
        image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        image = Image.linear_gradient("L").resize(size).convert("RGB")
    image.save(path)
    return path


def _decoded(markdown: str) -> Image.Image:
    assert markdown.endswith(")")
    return Image.open(io.BytesIO(base64.b64decode(markdown.split(",", 1)[1][:-1])))


def test_a_large_plot_is_shrunk_and_embedded_within_the_limit(tmp_path: Path) -> None:
    shown = thumbnail(_png(tmp_path / "map.png", (1200, 800)), "map.png")
    assert shown.embedded
    assert shown.markdown.startswith("![map.png](data:image/png;base64,")
    assert len(shown.markdown) <= MAX_ENCODED_BYTES
    assert _decoded(shown.markdown).size == (MAX_SIDE, round(MAX_SIDE * 800 / 1200))


def test_a_small_plot_keeps_its_size(tmp_path: Path) -> None:
    shown = thumbnail(_png(tmp_path / "tiny.png", (40, 30)), "tiny.png")
    assert shown.embedded and _decoded(shown.markdown).size == (40, 30)


def test_over_the_limit_the_metadata_says_so(tmp_path: Path) -> None:
    noisy = _png(tmp_path / "noise.png", (512, 512), noise=True)
    shown = thumbnail(noisy, "noise.png", max_bytes=4096)
    assert not shown.embedded
    assert "over the limit of 4096" in shown.markdown and "base64" not in shown.markdown


def test_what_cannot_be_previewed_is_a_note(tmp_path: Path) -> None:
    pdf = tmp_path / "map.pdf"
    pdf.write_bytes(b"%PDF-1.4")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    assert "not an image format" in thumbnail(pdf, "map.pdf").markdown
    note = thumbnail(broken, "broken.png")
    assert not note.embedded and note.markdown.startswith("`broken.png`: no preview (")
    assert "no preview" in thumbnail(tmp_path / "missing.png", "missing.png").markdown


def test_a_title_cannot_break_out_of_the_image_markdown(tmp_path: Path) -> None:
    shown = thumbnail(_png(tmp_path / "a.png", (10, 10)), "x](javascript:alert(1))[")
    assert shown.markdown.startswith("![xjavascript:alert1](data:image/png;base64,")
