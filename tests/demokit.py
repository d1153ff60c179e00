"""The demo's state for the tests that need a realistic one: built once per test session by
``make demo``'s own script, then copied for each test that uses it.

Building it costs about 100 s (a real dagster-daemon reduces two nights of synthetic CHAI
scans), so the demo test, the test of the documented commands and the browser test of the UI
share one build through the session-scoped fixture ``demo_state`` (``tests/conftest.py``).
Each of them changes what it is given (applies pipelines, ingests, runs), so each works on its
own copy (``copy_demo_state``): a test never sees what another one did, whatever the order.
A copy is complete: the ops-db (SQLite) and the Dagster instance (SQLite) live under the home
folder and are found through the environment, never through a path stored inside them; the
products the demo made stay where the demo wrote them and are only read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dagster_graphql import DagsterGraphQLClient

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: Nothing listens there: an apply in a test reports that it could not reload a webserver,
#: instead of reloading whatever webserver a developer has running on the default port.
NO_WEBSERVER = "http://127.0.0.1:9"


@dataclass(frozen=True)
class DemoState:
    home: Path
    output: str  # what the demo printed: its progress and its closing summary


def build_demo_state(home: Path) -> DemoState:
    """``python -m examples.demo --home HOME``, as ``make demo`` runs it, with none of the
    caller's ``CCAT_*`` settings leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCAT_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    result = subprocess.run([sys.executable, "-m", "examples.demo", "--home", str(home),
                             "--timeout", "400"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=1200, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return DemoState(home=home, output=result.stdout)


def demo_env(home: Path) -> dict[str, str]:
    """The environment ``make ui`` gives Dagster on a demo state at ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCAT_")}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env['PATH']}",
            "CCAT_WORKFLOW_MANAGER_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
            "CCAT_WORKFLOW_MANAGER_PROCESSING_LOCATION_ID": "local-processing",
            "CCAT_WORKFLOW_MANAGER_DAGSTER_WEBSERVER_URL": NO_WEBSERVER}


def copy_demo_state(state: DemoState, home: Path) -> dict[str, str]:
    """A private copy of the demo state at ``home``; returns the environment that uses it."""
    shutil.copytree(state.home, home, symlinks=True)
    return demo_env(home)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LOCATIONS_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


@contextlib.contextmanager
def webserver(env: dict[str, str], log: Path, timeout_s: float = 180
              ) -> Iterator[tuple[int, DagsterGraphQLClient]]:
    """``dagster-webserver`` on a free loopback port over the instance of ``env``; yields the
    port and a GraphQL client once the code location has loaded (the webserver answers before
    it has), stops it afterwards."""
    port = free_port()
    with open(log, "wb") as out:
        server = subprocess.Popen([str(BIN / "dagster-webserver"), "-w", "workspace.yaml",
                                   "-h", "127.0.0.1", "-p", str(port)], cwd=ROOT, env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        client = DagsterGraphQLClient("127.0.0.1", port_number=port)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                entries = client._execute(LOCATIONS_QUERY)[  # noqa: SLF001 - raw query
                    "workspaceOrError"]["locationEntries"]
            except Exception:
                entries = []
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                errors = [e["locationOrLoadError"] for e in entries
                          if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"]
                assert not errors, errors
                break
            if time.monotonic() > deadline or server.poll() is not None:
                raise AssertionError("the webserver did not load the code location:\n"
                                     + log.read_text()[-3000:])
            time.sleep(1)
        yield port, client
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
