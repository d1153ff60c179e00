"""Docs that run: every ``ccat-wm`` command of the README's tour and of the concrete command
blocks in ``docs/*.md`` works as written on the demo state.

A fenced block is checked when the line before it is ``RUNS_ON_DEMO`` (an HTML comment, not
rendered). Its ``ccat-wm`` lines run in order, as argv lists (``shlex``, no shell), from a
folder that looks like the checkout to them (its files linked) and whose ``var/tour`` is a
copy of the demo state, with the environment the tour's ``export`` line sets and no other
``CCAT_*`` setting. Each must exit 0 and print something on stdout. A ``ccat-wm`` line in a
block that is not marked must be a synopsis (placeholders such as ``PRODUCT_ID``,
``[--json]``, ``...`` or ``*``), so that no concrete command escapes the check by being left
unmarked.
"""

from __future__ import annotations

import os
import re
import shlex
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from ccat_assets.cli import cli
from ccat_assets.opsdb.session import dispose_engines
from ccat_assets.settings import get_settings
from tests.demokit import NO_WEBSERVER, ROOT, DemoState, copy_demo_state

RUNS_ON_DEMO = "<!-- runs on the demo state: tests/test_docs.py -->"
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: What makes a documented command a synopsis rather than a command to run.
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z0-9_]{2,}\b|\[|\.\.\.|\*|<")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    text: str
    checked: bool

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].startswith("```"):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            checked = i > 0 and lines[i - 1].strip() == RUNS_ON_DEMO
            blocks.append(Block(path, i + 1, "\n".join(lines[i + 1:end]), checked))
            i = end
        i += 1
    return blocks


def shell_lines(text: str) -> list[str]:
    """The block's lines with backslash continuations joined."""
    return text.replace("\\\n", " ").splitlines()


def ccat_wm_lines(block: Block) -> list[str]:
    return [line.strip() for line in shell_lines(block.text)
            if line.strip().startswith("ccat-wm ")]


def tour_environment(checkout: Path) -> dict[str, str]:
    """What the tour's ``export`` line sets, ``$PWD`` being the checkout."""
    readme = [b for b in fenced_blocks(ROOT / "README.md") if b.checked]
    assert readme, f"no block of README.md is marked {RUNS_ON_DEMO}"
    exports = [line for line in shell_lines(readme[0].text) if line.startswith("export ")]
    assert len(exports) == 1, exports
    pairs = dict(word.split("=", 1) for word in shlex.split(exports[0], comments=True)[1:])
    assert set(pairs) == {"CCAT_WORKFLOW_MANAGER_HOME", "DAGSTER_HOME"}, pairs
    return {name: value.replace("$PWD", str(checkout)) for name, value in pairs.items()}


def test_every_concrete_documented_command_is_checked() -> None:
    """A ``ccat-wm`` command someone could paste as it is sits in a checked block."""
    blocks = [b for path in DOCUMENTS for b in fenced_blocks(path)]
    checked = [line for b in blocks if b.checked for line in ccat_wm_lines(b)]
    assert len(checked) >= 20, checked  # the tour alone has ten
    unchecked = [f"{b.where()}: {line}" for b in blocks if not b.checked
                 for line in ccat_wm_lines(b)
                 if not PLACEHOLDER.search(" ".join(shlex.split(line, comments=True)))]
    assert not unchecked, "concrete commands outside a checked block:\n" + "\n".join(unchecked)


@pytest.mark.integration
@pytest.mark.slow
def test_documented_commands_run_on_the_demo_state(demo_state: DemoState, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each command goes through the console script's own entry point (``ccat-wm`` is
    ``cli(prog_name="ccat-wm")``) with its argv, in this process: a new interpreter per
    command would spend about two seconds of CPU each on imports, a minute for the lot."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in {"var", ".git"}:
            (checkout / entry.name).symlink_to(entry)
    env = copy_demo_state(demo_state, checkout / "var" / "tour")
    for name in list(os.environ):
        if name.startswith("CCAT_"):
            monkeypatch.delenv(name)
    for name, value in tour_environment(checkout).items():
        monkeypatch.setenv(name, value)
    assert os.environ["DAGSTER_HOME"] == env["DAGSTER_HOME"]  # the tour's home is the copy
    monkeypatch.setenv("CCAT_WORKFLOW_MANAGER_DAGSTER_WEBSERVER_URL", NO_WEBSERVER)
    monkeypatch.chdir(checkout)
    get_settings.cache_clear()
    dispose_engines()

    failures, ran = [], []
    try:
        for block in (b for path in DOCUMENTS for b in fenced_blocks(path) if b.checked):
            for line in ccat_wm_lines(block):
                argv = shlex.split(line, comments=True)
                result = CliRunner().invoke(cli, argv[1:], prog_name=argv[0])
                ran.append(line)
                if result.exit_code != 0 or not result.stdout.strip():
                    trace = "".join(traceback.format_exception(result.exception)) if (
                        result.exception and not isinstance(result.exception, SystemExit)) else ""
                    failures.append(f"{block.where()}: {line}\n  exit {result.exit_code}\n"
                                    f"  stdout: {result.stdout[-1500:]}\n"
                                    f"  stderr: {result.stderr[-1500:]}\n{trace[-3000:]}")
    finally:
        get_settings.cache_clear()
        dispose_engines()
    assert len(ran) >= 20, ran
    assert not failures, "\n".join(failures)
