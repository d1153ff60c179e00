"""Read the Dockerfile as a list of instructions and stages (no container engine needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
Instruction = tuple[str, str]


def instructions(text: str) -> list[Instruction]:
    """(INSTRUCTION, arguments) pairs: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            pairs.append((word.upper(), " ".join(rest.split())))
    return pairs


def stages(items: list[Instruction]) -> list[list[Instruction]]:
    """The instructions of each stage, each starting with its FROM."""
    out: list[list[Instruction]] = []
    for item in items:
        if item[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(item)
    return out


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK; fails on shell form."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def image_cmd() -> list[str]:
    """The runtime stage's CMD."""
    runtime = stages(instructions((ROOT / "Dockerfile").read_text()))[-1]
    return exec_form(dict(runtime)["CMD"])
