"""Named pause points, for tests that must kill or disturb a run at an exact place.

A fault test used to poll the ops-db and kill when a status showed up, hoping the process was
still in the phase it meant to hit (a collection of 3,000 files made "inside collection" last
long enough). Here the process under test stops *at* the point instead, and says so:

* ``CCAT_FAULT_POINT=<point>`` (or ``<point>:N``: the N-th time this process reaches it) and
  ``CCAT_FAULT_FILE=<path>`` arm one point;
* the process that reaches it first creates ``<path>`` atomically, holding its pid and the
  point, then waits until ``<path>.release`` exists (or ``CCAT_FAULT_TIMEOUT`` seconds, 600
  by default, so a forgotten pause cannot hang anything for ever) and goes on;
* the test waits for ``<path>`` (:func:`wait_paused`), kills the pid, restarts a service,
  or does whatever the fault is, and may :func:`release` it.

A point fires once per marker file, across processes: once ``<path>`` exists nobody pauses
there again, so a retry (another run worker with the same environment) goes through.

With ``CCAT_FAULT_POINT`` unset, :func:`reached` is one dictionary lookup: the points stay in
production code at no cost. Points (where the call is):

=================  ==========================================================================
``after-submit``   the job was submitted and its id recorded; the row is SUBMITTED
``job-running``    the job was first seen running and the row marked RUNNING
``in-collection``  inside the collection transaction, products added but not committed
``run-queued``     a run coordinator is about to queue a run it was handed (a test
                   coordinator calls it; Dagster's own code has no hook there)
=================  ==========================================================================
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

POINT_ENV = "CCAT_FAULT_POINT"
FILE_ENV = "CCAT_FAULT_FILE"
TIMEOUT_ENV = "CCAT_FAULT_TIMEOUT"
POINTS = frozenset({"after-submit", "job-running", "in-collection", "run-queued"})

_hits: dict[str, int] = {}
_lock = threading.Lock()


def reached(point: str) -> None:
    """Pause here if ``point`` is the armed one (see the module's docstring); else nothing."""
    armed = os.environ.get(POINT_ENV)
    if not armed:
        return
    name, _, nth = armed.partition(":")
    if name != point:
        return
    marker = Path(os.environ[FILE_ENV])
    with _lock:  # counted per marker: a test that arms the point anew starts from zero
        _hits[str(marker)] = count = _hits.get(str(marker), 0) + 1
    if count != (int(nth) if nth else 1):
        return
    if not _claim(marker, point):
        return  # fired already (in this or another process)
    deadline = time.monotonic() + float(os.environ.get(TIMEOUT_ENV, "600"))
    release_file = _release_file(marker)
    while not release_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _claim(marker: Path, point: str) -> bool:
    """Create ``marker`` with this pid, atomically and only if it does not exist yet: a reader
    never sees it half-written (hard link of a complete temporary file)."""
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(f"{os.getpid()} {point}\n")
    try:
        os.link(tmp, marker)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink()


def _release_file(marker: Path) -> Path:
    return marker.with_name(marker.name + ".release")


def arm(point: str, marker: Path, nth: int = 1) -> dict[str, str]:
    """The environment variables that arm ``point`` with ``marker`` (for a child process or
    ``monkeypatch.setenv``)."""
    if point not in POINTS:
        raise ValueError(f"unknown fault point {point!r}; known: {sorted(POINTS)}")
    return {POINT_ENV: point if nth == 1 else f"{point}:{nth}", FILE_ENV: str(marker)}


def wait_paused(marker: Path, timeout_s: float = 120,
                alive: Callable[[], bool] | None = None) -> int:
    """Wait until a process paused at the point armed with ``marker``; return its pid.
    ``alive`` (a callable) is asked while waiting: False stops the wait with an error, so a
    process under test that ended early is reported at once."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if marker.exists():
            return int(marker.read_text().split()[0])
        if alive is not None and not alive():
            raise AssertionError(f"ended before reaching the fault point ({marker.name})")
        time.sleep(0.02)
    raise AssertionError(f"no process reached the fault point within {timeout_s} s")


def release(marker: Path) -> None:
    """Let the paused process go on."""
    with contextlib.suppress(FileExistsError):
        _release_file(marker).touch()
