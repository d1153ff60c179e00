"""The image's entry points, run as plain commands (no container engine here): the console
script, the migration hook's `ccat-wm db upgrade`, and the default CMD, a real code server on
a migrated SQLite ops-db that answers the HEALTHCHECK's gRPC health check and serves the
location, then stops on SIGTERM as Kubernetes stops it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster._grpc.client import DagsterGrpcClient
from dagster._grpc.types import ListRepositoriesResponse
from dagster_shared.serdes import deserialize_value

from tests.deploy.dockerfile import image_cmd

BIN = Path(sys.executable).parent


def _run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def image_env(tmp_path: Path) -> dict[str, str]:
    """The environment the image and the chart give these commands, on a private SQLite."""
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CCAT_", "DAGSTER_"))},
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DAGSTER_HOME": str(dagster_home),
        "CCAT_WORKFLOW_MANAGER_HOME": str(tmp_path / "ccat"),
        "CCAT_OPS_DB_URL": f"sqlite:///{tmp_path / 'opsdb.sqlite'}",
        "CCAT_WORKFLOW_MANAGER_DAGSTER_WEBSERVER_URL": "http://127.0.0.1:9",
    }


def test_help_of_both_commands(image_env: dict[str, str]) -> None:
    assert "db" in _run([str(BIN / "ccat-wm"), "--help"], image_env)
    help_text = _run([str(BIN / "dagster"), "code-server", "start", "--help"], image_env)
    assert "--module-name" in help_text and "--port" in help_text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def code_server(
    image_env: dict[str, str], tmp_path: Path,
) -> Iterator[tuple[int, subprocess.Popen]]:
    _run([str(BIN / "ccat-wm"), "db", "upgrade"], image_env)
    port = _free_port()
    # The image's CMD, bound to loopback and a free port instead of 0.0.0.0:3030.
    cmd = image_cmd()
    argv = [str(BIN / cmd[0]), *cmd[1:]]
    argv[argv.index("-h") + 1], argv[argv.index("-p") + 1] = "127.0.0.1", str(port)
    log = (tmp_path / "code-server.log").open("w")
    server = subprocess.Popen(argv, env=image_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield port, server
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
        log.close()


def wait_serving(client: DagsterGrpcClient, server: subprocess.Popen, log: Path) -> None:
    """Until the code server answers its health check (60 s at most)."""
    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None, log.read_text()
        try:
            if client.health_check_query() == "SERVING":
                return
        except Exception:  # not listening yet
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.5)


def test_code_server_serves_the_location_and_stops_on_sigterm(
    code_server: tuple[int, subprocess.Popen], image_env: dict[str, str], tmp_path: Path,
) -> None:
    port, server = code_server
    client = DagsterGrpcClient(port=port, host="127.0.0.1")
    wait_serving(client, server, tmp_path / "code-server.log")
    # Serving means the location loaded: an import or ops-db error would come back here.
    loaded = deserialize_value(client.list_repositories())
    assert isinstance(loaded, ListRepositoriesResponse), loaded
    assert [r.repository_name for r in loaded.repository_symbols] == ["__repository__"]
    # The exact HEALTHCHECK command of the Dockerfile, against this port.
    _run([str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(port)], image_env)

    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=30) is not None


def test_one_host_workspace_reaches_a_standalone_code_server(
    image_env: dict[str, str], tmp_path: Path,
) -> None:
    """`deploy/workspace.grpc.yaml` is what the daemon and webserver of a one-host deployment
    load (docs/operations.md): the documented `dagster code-server start` serves it, and
    Dagster's CLI, loading that workspace, finds the location's sensors there."""
    import yaml

    workspace = Path(__file__).resolve().parents[2] / "deploy" / "workspace.grpc.yaml"
    (entry,) = yaml.safe_load(workspace.read_text())["load_from"]
    host, port = entry["grpc_server"]["host"], entry["grpc_server"]["port"]
    assert entry["grpc_server"]["location_name"] == "ccat_assets.definitions"
    _run([str(BIN / "ccat-wm"), "db", "upgrade"], image_env)
    log = (tmp_path / "code-server.log").open("w")
    server = subprocess.Popen(
        [str(BIN / "dagster"), "code-server", "start", "-m", "ccat_assets.definitions",
         "-h", host, "-p", str(port)], env=image_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_serving(DagsterGrpcClient(port=port, host=host), server,
                     tmp_path / "code-server.log")
        listed = _run([str(BIN / "dagster"), "sensor", "list", "-w", str(workspace)],
                      image_env)
        assert "ccat_reconcile_sensor" in listed and "ccat_queued_runs_sensor" in listed, listed
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
