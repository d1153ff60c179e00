"""The fault points themselves: nothing happens unarmed; armed, the first process to reach
the point pauses until released, writing its pid; the point fires once across processes and
at the N-th hit when asked."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ccat_assets import fault_points


def test_unarmed_and_other_points_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fault_points.POINT_ENV, raising=False)
    fault_points.reached("after-submit")  # returns at once
    for name, value in fault_points.arm("in-collection", tmp_path / "m").items():
        monkeypatch.setenv(name, value)
    fault_points.reached("after-submit")  # not the armed point
    assert not (tmp_path / "m").exists()


def test_unknown_point_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown fault point"):
        fault_points.arm("after-sumbit", tmp_path / "m")


_CHILD = """
import sys
from ccat_assets import fault_points
for _ in range(int(sys.argv[1])):
    fault_points.reached("job-running")
print("done", flush=True)
"""


def _child(hits: int, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(hits)], env={**os.environ, **env},
                            stdout=subprocess.PIPE, text=True)


def test_pauses_once_across_processes_until_released(tmp_path: Path) -> None:
    marker = tmp_path / "fault"
    first = _child(1, fault_points.arm("job-running", marker))
    pid = fault_points.wait_paused(marker, 60, alive=lambda: first.poll() is None)
    assert pid == first.pid and marker.read_text().split() == [str(pid), "job-running"]
    # another process with the same environment goes through: the point fired already
    second = _child(1, fault_points.arm("job-running", marker))
    assert second.communicate(timeout=60)[0] == "done\n"
    assert first.poll() is None  # still paused
    fault_points.release(marker)
    assert first.communicate(timeout=60)[0] == "done\n"


def test_nth_hit(tmp_path: Path) -> None:
    marker = tmp_path / "fault"
    child = _child(5, fault_points.arm("job-running", marker, nth=3))
    assert fault_points.wait_paused(marker, 60, alive=lambda: child.poll() is None) == child.pid
    fault_points.release(marker)
    assert child.communicate(timeout=60)[0] == "done\n"


def test_count_starts_anew_with_each_marker(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A second test in the same process arms the point with its own marker and is paused
    at its first hit, whatever the first test's hits were."""
    for marker in (tmp_path / "first", tmp_path / "second"):
        for name, value in fault_points.arm("in-collection", marker).items():
            monkeypatch.setenv(name, value)
        thread = threading.Thread(target=fault_points.reached, args=("in-collection",))
        thread.start()
        assert fault_points.wait_paused(marker, 60) == os.getpid()
        fault_points.release(marker)
        thread.join(60)
        fault_points.reached("in-collection")  # a retry's hit: goes through
    assert not thread.is_alive()


def test_threads_of_one_process_pause_once(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "fault"
    for name, value in fault_points.arm("in-collection", marker).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(fault_points, "_hits", {})
    threads = [threading.Thread(target=fault_points.reached, args=("in-collection",))
               for _ in range(4)]
    for t in threads:
        t.start()
    assert fault_points.wait_paused(marker, 60) == os.getpid()
    fault_points.release(marker)
    for t in threads:
        t.join(60)
        assert not t.is_alive()
