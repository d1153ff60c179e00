"""constraints.txt is the resolver's output for every requirement we declare, the Makefile
regenerates it with the command its header names, and every image installs with it.

The file is written by pip-compile (``make constraints``), never by hand; these checks catch
a dependency added to a pyproject.toml without regenerating it, a pin outside what a
requirement allows, and an image that pins by hand again.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "constraints.txt"
DEFS = sorted((ROOT / "examples" / "chai" / "apptainer").glob("*.def"))


def pins() -> dict[str, str]:
    """Canonical name -> pinned version, for every line that is not a comment."""
    found = {}
    for line in CONSTRAINTS.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", text)
        assert match, f"constraints.txt: {line!r} is not a NAME==VERSION pin"
        found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def declared() -> list[tuple[str, Requirement]]:
    """(where, requirement) for everything pip-compile resolves from."""
    out = []
    for path in (ROOT / "pyproject.toml", ROOT / "examples" / "chai" / "pyproject.toml"):
        project = tomllib.loads(path.read_text())["project"]
        where = str(path.relative_to(ROOT))
        out += [(where, Requirement(r)) for r in project.get("dependencies", [])]
        for extra, reqs in project.get("optional-dependencies", {}).items():
            out += [(f"{where} [{extra}]", Requirement(r)) for r in reqs]
    for line in (ROOT / "constraints.in").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            out.append(("constraints.in", Requirement(line)))
    return out


def test_every_declared_requirement_is_pinned_within_its_range() -> None:
    pinned = pins()
    problems = []
    for where, req in declared():
        if req.marker is not None and not req.marker.evaluate():
            continue
        version = pinned.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"{where}: {req} is not in constraints.txt (run make constraints)")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{where}: {req} does not allow the pin {version}")
    assert problems == []


def _pip_compile_args(text: str) -> list[str]:
    return sorted(shlex.split(text.replace("\\\n", " "))[1:])


def test_makefile_regenerates_with_the_command_in_the_header() -> None:
    header = re.search(r"^#\s+pip-compile (.+)$", CONSTRAINTS.read_text(), re.M)
    assert header, "constraints.txt has no pip-compile header: it was not generated"
    recipe = re.search(r"^constraints:.*\n\t\$\(BIN\)/(pip-compile .+?)(?:\n(?!\t)|\Z)",
                       (ROOT / "Makefile").read_text(), re.M | re.S)
    assert recipe, "Makefile has no constraints target running pip-compile"
    made = [a for a in _pip_compile_args(recipe.group(1)) if a != "--quiet"]
    assert made == _pip_compile_args("pip-compile " + header.group(1))
    # Machine-specific package sources must never land in the file.
    assert "--no-emit-index-url" in made and "--no-emit-find-links" in made


@pytest.mark.parametrize("definition", DEFS, ids=[d.stem for d in DEFS])
def test_example_images_install_with_the_constraints(definition: Path) -> None:
    text = definition.read_text()
    sections = dict(re.findall(r"^%(\w+)\n(.*?)(?=^%|\Z)", text, re.M | re.S))
    copied = dict(line.split() for line in sections["files"].strip().splitlines())
    assert "constraints.txt" in copied, "the repository's constraints.txt is copied in"
    post = sections["post"]
    assert f"-c {copied['constraints.txt']}" in post
    assert "==" not in post, "versions come from constraints.txt, not from the recipe"
    for source in copied:
        assert (ROOT / source).exists(), f"%files {source} is relative to the repository root"
