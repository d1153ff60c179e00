"""The end-to-end demo behind ``make demo``.

On a fresh local state folder it creates the ops-db and a Dagster instance, applies the CHAI
pipelines (with the map's daily cooldown shortened for the demo), starts a real
``dagster-daemon``, ingests a first night of synthetic scans and waits until the standing
pipeline has no gaps and no runs in flight; then it ingests a second night and shows that only
the touched sub-groups and maps were reduced again. It ends with a summary (runs by step and
status, products by type, the lineage of one final map and the path of its quicklook PNG) and
exits non-zero if anything failed. ``make ui`` opens the same state in the Dagster webserver.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PIPELINE = "chai_standing"
NIGHTS = [("2026-11-01", "NGC253,ORION", "CO43"), ("2026-11-02", "NGC253", "CO43")]
#: The demo's override of the standing pipeline's cooldowns (seconds), so that it finishes in
#: minutes: the map keeps the longest, as in production, where it is a day.
DEMO_COOLDOWNS = {"calibrate": 2, "baseline": 2, "grid": 10}


def step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def run(*args: str, env: dict[str, str], capture: bool = False) -> str:
    result = subprocess.run(args, env=env, cwd=ROOT, text=True, check=False,
                            capture_output=capture)
    if result.returncode != 0:
        if capture:
            print(result.stdout, result.stderr, file=sys.stderr)
        raise SystemExit(f"demo: `{' '.join(args)}` failed with exit code {result.returncode}")
    return result.stdout if capture else ""


def prepare(home: Path) -> dict[str, str]:
    if home.exists():
        shutil.rmtree(home)
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {**os.environ, "CCAT_WORKFLOW_MANAGER_HOME": str(home),
           "DAGSTER_HOME": str(dagster_home), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "CCAT_WORKFLOW_MANAGER_PROCESSING_LOCATION_ID": "local-processing",
           "CCAT_WORKFLOW_MANAGER_SENSOR_INTERVAL_SECONDS": "5"}
    env.pop("CCAT_OPS_DB_URL", None)
    return env


def demo_spec(home: Path) -> Path:
    """The example specs with the standing pipeline's cooldowns overridden for the demo."""
    spec = yaml.safe_load((ROOT / "examples/chai/pipelines.yaml").read_text())
    for pipeline in spec["pipelines"]:
        if pipeline["name"] == PIPELINE:
            for s in pipeline["steps"]:
                s["cooldown_seconds"] = DEMO_COOLDOWNS[s["name"]]
    path = home / "pipelines.demo.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def ingest_night(home: Path, env: dict[str, str], night: str, sources: str, lines: str) -> None:
    archive = home / "archive"
    run(str(BIN / "chai-generate"), "--out", str(archive), "--night", night, "--sources",
        sources, "--lines", lines, "--scans-per-target", "2", "--positions-per-scan", "6",
        "--channels", "128", env=env)
    run(str(BIN / "ccat-wm"), "ingest", str(archive / night / "ingest.yaml"), env=env)


def start_daemon(home: Path, env: dict[str, str],
                 workspace: Path = ROOT / "workspace.yaml") -> subprocess.Popen[bytes]:
    # Create the instance first: a daemon racing a brand-new SQLite instance can fail to load.
    run(str(BIN / "dagster"), "instance", "migrate", env=env, capture=True)
    log = open(home / "daemon.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(  # noqa: S603 - fixed argv
        [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_daemon(daemon: subprocess.Popen[bytes]) -> None:
    if daemon.poll() is None:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)


def wait_until_settled(env: dict[str, str], daemon: subprocess.Popen[bytes], home: Path,
                       timeout_s: float) -> None:
    """Until every (step, sub-group) is up to date: no gap and nothing in flight."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise SystemExit(f"demo: dagster-daemon exited; see {home / 'daemon.log'}")
        decisions = json.loads(run(str(BIN / "ccat-wm"), "gaps", PIPELINE, "--json",
                                   env=env, capture=True))
        reasons = Counter(d["reason"] for d in decisions)
        stuck = reasons.get("retries_exhausted", 0)
        line = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
        if line != last:
            print(f"    {time.strftime('%H:%M:%S')}  {len(decisions)} pairs: {line}", flush=True)
            last = line
        if stuck:
            raise SystemExit("demo: some sub-groups failed more than max_retries times")
        if decisions and set(reasons) == {"up_to_date"}:
            return
        time.sleep(2)
    raise SystemExit(f"demo: the pipeline did not settle within {timeout_s:.0f} s")


def summary(env: dict[str, str]) -> int:
    out = run(sys.executable, "-m", "examples.demo_summary", PIPELINE, env=env, capture=True)
    print(out)
    return json.loads(out.strip().splitlines()[-1])["failed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=ROOT / "var" / "demo")
    parser.add_argument("--timeout", type=float, default=600, help="per night, seconds")
    args = parser.parse_args()
    home = args.home.resolve()
    started = time.monotonic()
    env = prepare(home)
    step(f"ops-db and Dagster instance under {home}")
    run(str(BIN / "ccat-wm"), "db", "upgrade", env=env)
    step(f"apply the CHAI pipelines (demo cooldowns {DEMO_COOLDOWNS} s)")
    run(str(BIN / "ccat-wm"), "apply", "--no-reload", str(demo_spec(home)), env=env)
    step("start dagster-daemon (sensors, run queue, run workers)")
    daemon = start_daemon(home, env)
    try:
        for i, (night, sources, lines) in enumerate(NIGHTS, start=1):
            step(f"night {i} ({night}): ingest synthetic CHAI scans of {sources} {lines}")
            ingest_night(home, env, night, sources, lines)
            step(f"wait until {PIPELINE} has no gaps and no runs in flight")
            wait_until_settled(env, daemon, home, args.timeout)
    finally:
        stop_daemon(daemon)
    step("summary")
    failed = summary(env)
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s; `make ui` shows this state "
          "in the Dagster webserver")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
