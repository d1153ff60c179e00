"""Every benchmark runs at a tiny size, so none rots between the runs that measure.

A benchmark is a ``bench/*.py`` with a ``__main__`` entry (``report.py`` excepted: it is run
last, on what the others printed). Each must print one JSON document with a ``machine``
description and ``targets``/``figures`` lists of the shape in ``bench/targets.py``. A new
benchmark without tiny arguments here fails the test, so adding one means adding it here.
Timing is never asserted: tiny sizes measure nothing; they only prove the code runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PG_URL, _postgres_reachable, require_service

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"

#: The tiny arguments of each benchmark: the same code paths as a real run, seconds each.
TINY: dict[str, list[str]] = {
    "grouping": ["--sizes", "300", "--repeat", "1"],
    "gap_sensor": ["--sizes", "200", "--new", "20", "--history", "0,1", "--repeats", "1"],
    "collect": ["--files", "2", "--file-mb", "1", "--repeat", "1", "--map-packages", "40",
                "--noise-maps", "1", "--noise-map-packages", "10", "--query-repeat", "3"],
    "check": ["--scans", "20", "--repeats", "1", "--sample", "3"],
    "definitions_load": ["--sizes", "2", "--repeats", "1"],
    "poll_logs": ["--jobs", "10", "--rounds", "1", "--floods", "1"],
    "overhead": ["--n", "2", "--batch-size", "2", "--sleep", "0.01", "--parallel", "2",
                 "--timeout", "240"],
    "batch_profile": ["--n", "4", "--batch-size", "4", "--sleep", "0.01", "--top", "5"],
    "partitions": ["--scans", "20", "--ticks", "2", "--repeats", "1", "--timeout", "300"],
    "inflight": ["--runs", "1", "--batch-sizes", "2", "--timeout", "300"],
    "retirement": ["--scans", "200", "--dagster-scans", "200"],
}

#: Benchmarks run at a reduced size by a test of their own, which checks their output too.
ELSEWHERE = {"load": "tests/reliability/test_rel_load.py"}

#: Benchmarks that also need the loopback SLURM cluster and sshd.
NEEDS_SLURM = {"inflight"}


def benchmarks() -> list[str]:
    """Every ``bench/*.py`` that runs as a program, but the report writer."""
    return sorted(path.stem for path in BENCH.glob("*.py")
                  if path.stem != "report" and "__main__" in path.read_text())


def run_bench(name: str, args: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CCAT_TEST_DATABASE_URL": PG_URL}
    return subprocess.run([sys.executable, str(BENCH / f"{name}.py"), *args], cwd=tmp,
                          env=env, capture_output=True, text=True, timeout=600, check=False)


def check_shape(name: str, data: dict) -> None:
    assert data.get("machine", {}).get("cpu_model"), f"{name}: no machine description"
    assert isinstance(data.get("targets"), list), f"{name}: no targets list"
    assert isinstance(data.get("figures"), list) and data["figures"], f"{name}: no figures"
    for target in data["targets"]:
        assert set(target) == {"name", "target", "value", "holds"}, (name, target)
        assert target["holds"] in (True, False, None), (name, target)
    for row in data["figures"]:
        assert {"name", "value", "unit"} <= set(row), (name, row)


def test_every_benchmark_has_tiny_arguments() -> None:
    missing = sorted(set(benchmarks()) - set(TINY) - set(ELSEWHERE))
    assert not missing, f"benchmarks without tiny arguments in {__file__}: {missing}"
    stale = sorted((set(TINY) | set(ELSEWHERE)) - set(benchmarks()))
    assert not stale, f"tiny arguments for benchmarks that are gone: {stale}"


#: The slowest tiny runs, started first. Two run at a time: they mostly wait on a daemon or a
#: queue, so two together take about half the time of one after another.
SLOWEST_FIRST = ["overhead", "inflight", "partitions", "check"]
AT_A_TIME = 2


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-results")


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[dict[str, Future[subprocess.CompletedProcess[str]]]]:
    """Every benchmark's tiny run, started when the first test asks, ``AT_A_TIME`` at once."""
    order = [n for n in SLOWEST_FIRST if n in TINY] + sorted(set(TINY) - set(SLOWEST_FIRST))
    with ThreadPoolExecutor(max_workers=AT_A_TIME) as pool:
        yield {name: pool.submit(run_bench, name, TINY[name], tmp_path_factory.mktemp(name))
               for name in order}


@pytest.mark.parametrize("name", sorted(TINY))
def test_benchmark_runs_at_tiny_size(name: str, results_dir: Path,
                                     tiny_runs: dict[str, Future[Any]]) -> None:
    require_service(_postgres_reachable(), f"PostgreSQL at CCAT_TEST_DATABASE_URL={PG_URL!r}")
    if name in NEEDS_SLURM:
        from tests.execution.conftest import _reachable, slurm_target_from_env

        require_service(_reachable(slurm_target_from_env()),
                        "SLURM over SSH (bash scripts/services/up.sh; . scripts/services/env.sh)")
    done = tiny_runs[name].result()
    assert done.returncode == 0, f"{name} failed:\n{done.stderr[-4000:]}"
    data = json.loads(done.stdout)
    check_shape(name, data)
    (results_dir / f"{name}.json").write_text(done.stdout)


def test_report_names_every_benchmark_and_target(results_dir: Path) -> None:
    """The report writer reads what the benchmarks printed and lists each with its targets."""
    written = sorted(p.stem for p in results_dir.glob("*.json"))
    assert written, "no benchmark printed a result to report on"
    done = subprocess.run([sys.executable, str(BENCH / "report.py"), "--results",
                           str(results_dir)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    report = (results_dir / "REPORT.md").read_text()
    assert "## Machine" in report
    for name in written:
        data = json.loads((results_dir / f"{name}.json").read_text())
        for target in data["targets"]:
            assert target["name"] in report, (name, target["name"])
