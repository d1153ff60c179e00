"""The load benchmark (``bench/load.py``) scaled down to 200 scans, as a correctness test:
three pipelines sharing one grouping (two CONTINUOUS with different priorities and batched
per-scan steps, one CRON), scans arriving in 10 bursts while runs are in flight, on a real
daemon with PostgreSQL for the ops-db and the Dagster instance.

Asserted, never timed: every gap filled exactly once, no job submitted twice,
``max_concurrent_runs`` never exceeded (sampled), priority order held in the queue,
``ccat-wm check`` clean, and the final state equal to a from-scratch gap evaluation. With
``--chaos`` the same while run workers are SIGKILLed and the daemon's process group once;
the test requires that the kills happened.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PG_URL, _postgres_reachable, require_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SCANS = 200


@pytest.mark.timeout(1800)  # a hang guard: on a busy 2-CPU machine it takes many minutes
@pytest.mark.parametrize("mode", ["plain", "chaos"])
def test_load_gaps_filled_once_under_bursts(mode: str, tmp_path: Path) -> None:
    require_service(_postgres_reachable(), f"PostgreSQL at CCAT_TEST_DATABASE_URL={PG_URL!r}")
    argv = [sys.executable, str(ROOT / "bench" / "load.py"), "--scans", str(SCANS),
            "--burst-interval", "2", "--sleep-min", "0.01", "--sleep-max", "0.05",
            "--timeout", "1500", "--postgres-url", PG_URL, "--workdir", str(tmp_path)]
    if mode == "chaos":
        argv += ["--chaos", "--kill-every", "15"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCAT_", "DAGSTER_"))}
    result = subprocess.run(argv, cwd=ROOT, env=env | {"PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=1750, check=False)
    assert result.stdout, result.stderr[-5000:]
    report = json.loads(result.stdout)
    checks = report["result"]["checks"]
    failed = {name: check for name, check in checks.items() if not check["holds"]}
    assert not failed, json.dumps(failed, indent=1)[-5000:] + result.stderr[-3000:]
    assert result.returncode == 0
    assert report["result"]["completed_runs"] >= 2 * SCANS  # both CONTINUOUS calibrate steps
    if mode == "chaos":
        chaos = report["result"]["chaos"]
        assert chaos["daemon_killed"] == 1
        assert chaos["run_workers_killed"] >= 1, "no run worker was killed"
    print(f"\n{mode}: {report['result']['wall_s']} s, {report['result']['dagster_runs']} "
          f"Dagster runs, {report['result']['sub_groups_per_minute']} sub-groups/min")
