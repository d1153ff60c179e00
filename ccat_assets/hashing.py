"""Stable hashes of JSON-able content and streamed file checksums (``sha256:`` prefixed)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

CHUNK_BYTES = 1 << 20


def content_hash(value: Any) -> str:
    """sha256 of the canonical JSON of ``value``: equal content, equal hash, across processes."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def file_checksum(path: Path) -> str:
    """Streamed sha256 of a file, never reading it whole into memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def package_checksum(files: list[tuple[str, str]]) -> str:
    """Checksum of a raw package: sha256 over its sorted ``relative_path checksum`` lines."""
    lines = "".join(f"{path} {checksum}\n" for path, checksum in sorted(files))
    return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()
