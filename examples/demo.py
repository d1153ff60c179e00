"""The end-to-end demo behind ``make demo``.

On a fresh local state folder it creates the ops-db and a Dagster instance, applies the CHAI
pipelines, ingests a first night of synthetic scans and reduces the standing pipeline
completely; then it ingests a second night and shows that only the touched sub-groups and maps
are reduced again. It ends with a summary (runs by step and status, products by type, the
lineage of one final map and the path of its quicklook PNG) and exits non-zero if anything
failed. ``make ui`` opens the same state in the Dagster webserver.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PIPELINE = "chai_standing"
NIGHTS = [("2026-11-01", "NGC253,ORION", "CO43"), ("2026-11-02", "NGC253", "CO43")]


def step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def run(*args: str, env: dict[str, str], capture: bool = False) -> str:
    result = subprocess.run(args, env=env, cwd=ROOT, text=True, check=False,
                            capture_output=capture)
    if result.returncode != 0:
        if capture:
            print(result.stdout, result.stderr, file=sys.stderr)
        sys.exit(f"demo: `{' '.join(args)}` failed with exit code {result.returncode}")
    return result.stdout if capture else ""


def prepare(home: Path) -> dict[str, str]:
    if home.exists():
        shutil.rmtree(home)
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {**os.environ, "CCAT_WORKFLOW_MANAGER_HOME": str(home),
           "DAGSTER_HOME": str(dagster_home), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("CCAT_OPS_DB_URL", None)
    return env


def ingest_night(home: Path, env: dict[str, str], night: str, sources: str, lines: str) -> None:
    archive = home / "archive"
    run(str(BIN / "chai-generate"), "--out", str(archive), "--night", night, "--sources",
        sources, "--lines", lines, "--scans-per-target", "2", "--positions-per-scan", "6",
        "--channels", "128", env=env)
    run(str(BIN / "ccat-wm"), "ingest", str(archive / night / "ingest.yaml"), env=env)


def reduce_inline(env: dict[str, str]) -> int:
    """Materialize every missing or out-of-date partition of the standing pipeline, step by
    step, through the Dagster instance (so the webserver shows every materialization)."""
    code = (
        "import sys; from examples.demo_inline import reduce_all; "
        f"sys.exit(reduce_all({PIPELINE!r}))"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=False)
    return result.returncode


def summary(env: dict[str, str]) -> int:
    out = run(sys.executable, "-m", "examples.demo_summary", PIPELINE, env=env, capture=True)
    print(out)
    return json.loads(out.strip().splitlines()[-1])["failed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=ROOT / "var" / "demo")
    args = parser.parse_args()
    home = args.home.resolve()
    started = time.monotonic()
    env = prepare(home)
    step(f"ops-db and Dagster instance under {home}")
    run(str(BIN / "ccat-wm"), "db", "upgrade", env=env)
    step("apply the CHAI pipelines")
    run(str(BIN / "ccat-wm"), "apply", "--no-reload", "examples/chai/pipelines.yaml", env=env)
    failed = 0
    for i, (night, sources, lines) in enumerate(NIGHTS, start=1):
        step(f"night {i} ({night}): generate and ingest synthetic CHAI scans of {sources} {lines}")
        ingest_night(home, env, night, sources, lines)
        step(f"reduce the standing pipeline {PIPELINE}")
        failed += reduce_inline(env)
    step("summary")
    failed += summary(env)
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s; `make ui` shows this state "
          "in the Dagster webserver")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
