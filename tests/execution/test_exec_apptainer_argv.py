"""The ``apptainer exec`` argv, checked exactly: Apptainer itself cannot be installed here.

What runs for real: the pull-if-missing wrapper, with a stand-in ``apptainer`` executable (a
small script that records its argv), proves the image is pulled once, atomically, and that
the wrapped command and its arguments pass through untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from ccat_assets.results.contract import RunLayout
from resources.apptainer import (
    PULL_ARGV0,
    PULL_IF_MISSING,
    ApptainerRuntime,
    HostRuntime,
    sif_name,
    split_env,
)

IMAGE = "ghcr.io/ccatobs/chai-calibration:1.2.0"


def _binds(root: Path) -> list[tuple[Path, PurePosixPath, bool]]:
    w = PurePosixPath("/workflow")
    return [(root / "input", w / "input", True), (root / "workspace", w / "workspace", False),
            (root / "output", w / "output", False), (root / "config", w / "config", True),
            (root / "logs", w / "logs", False)]


def test_exact_exec_argv_without_apptainer_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("HOME", "/home/ccat")
    monkeypatch.delenv("TMPDIR", raising=False)
    monkeypatch.setenv("SECRET_TOKEN", "must-not-pass")
    root = Path("/data/pipelines/chai/scan=s1/calibrate/run-7")
    runtime = ApptainerRuntime(Path("/data/sif-cache"), pull_missing=False)
    argv, env = runtime.command(
        argv=["chai-calibrate", "--fast"],
        env={"WORKFLOW_STEP": "calibrate", "OMP_NUM_THREADS": "4",
             "WORKFLOW_OUTPUT_DIR": "/workflow/workspace/calibrate"},
        binds=_binds(root), image=IMAGE, gpu=0, workdir=root / "workspace" / "calibrate")
    assert argv == [
        "apptainer", "exec", "--cleanenv", "--containall", "--no-eval",
        "--bind", f"{root}/input:/workflow/input:ro",
        "--bind", f"{root}/workspace:/workflow/workspace",
        "--bind", f"{root}/output:/workflow/output",
        "--bind", f"{root}/config:/workflow/config:ro",
        "--bind", f"{root}/logs:/workflow/logs",
        "--env", "OMP_NUM_THREADS=4",
        "--env", "WORKFLOW_OUTPUT_DIR=/workflow/workspace/calibrate",
        "--env", "WORKFLOW_STEP=calibrate",
        "--pwd", "/workflow/workspace/calibrate",
        "/data/sif-cache/ghcr.io_ccatobs_chai-calibration_1.2.0.sif",
        "chai-calibrate", "--fast",
    ]
    assert env == {"PATH": "/usr/bin:/bin", "HOME": "/home/ccat"}  # nothing else leaks


def test_upstream_workspace_folders_are_bound_read_only_after_the_workspace() -> None:
    """The seed contract's ``/workflow/workspace/<upstream step>/``: each upstream folder is
    bound read-only over itself, after (inside) the writable workspace bind."""
    root = Path("/data/pipelines/chai/scan=s1/grid/run-9")
    layout = RunLayout(root=root, step="grid")
    argv, _ = ApptainerRuntime(Path("/c"), pull_missing=False).command(
        argv=["p"], env={}, binds=layout.binds(["calibrate", "baseline"]), image="i", gpu=0,
        workdir=layout.workspace_dir)
    binds = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--bind"]
    assert binds == [
        f"{root}/input:/workflow/input:ro", f"{root}/workspace:/workflow/workspace",
        f"{root}/output:/workflow/output", f"{root}/config:/workflow/config:ro",
        f"{root}/logs:/workflow/logs",
        f"{root}/workspace/calibrate:/workflow/workspace/calibrate:ro",
        f"{root}/workspace/baseline:/workflow/workspace/baseline:ro",
    ]
    assert argv[argv.index("--pwd") + 1] == "/workflow/workspace/grid"
    assert len(layout.binds()) == 5  # without upstream steps: the contract's five, as before


def test_gpu_adds_nv_and_image_comes_from_the_cache() -> None:
    runtime = ApptainerRuntime(Path("/cache"), pull_missing=False)
    argv, _ = runtime.command(argv=["x"], env={}, binds=[], image="docker://org/img:2",
                              gpu=1, workdir=Path("/nowhere"))
    assert argv[argv.index("--nv") + 1:] == ["--pwd", "/workflow", "/cache/org_img_2.sif", "x"]
    assert sif_name("docker://org/img:2") == "org_img_2.sif"


def test_values_apptainer_would_split_or_evaluate_go_through_apptainerenv() -> None:
    """``--env A=x=1,B=2`` sets two variables in Apptainer (CSV parsing of the flag) and
    double quotes are stripped: such values travel as APPTAINERENV_<NAME> instead."""
    tricky = {"LDFLAGS": "-Wl,-rpath,/opt/lib", "PAIR": "x=1,y=2", "Q": '"quoted"',
              "SUBST": "$(touch /tmp/x)", "NL": "a\nb", "PLAIN": "fine value/1.0"}
    argv, env = ApptainerRuntime(Path("/c"), pull_missing=False).command(
        argv=["p"], env=tricky, binds=[], image="i", gpu=0, workdir=Path("/w"))
    assert [a for a in argv if "=" in a and not a.startswith("/")] == ["PLAIN=fine value/1.0"]
    assert {k: v for k, v in env.items() if k.startswith("APPTAINERENV_")} == {
        f"APPTAINERENV_{k}": v for k, v in tricky.items() if k != "PLAIN"}
    assert "--no-eval" in argv  # and Apptainer does not expand $(...) in any of them


@pytest.mark.parametrize("name", ["1BAD", "A-B", "A B", "", "A=B"])
def test_invalid_variable_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="not"):
        split_env({name: "v"})


def test_nul_in_a_value_is_rejected() -> None:
    with pytest.raises(ValueError, match="NUL"):
        split_env({"A": "x\x00y"})


@pytest.mark.parametrize("bad", ["/data/a,b", "/data/a:b"])
def test_bind_paths_apptainer_cannot_express_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="--bind"):
        ApptainerRuntime(Path("/c")).command(
            argv=["p"], env={}, binds=[(Path(bad), PurePosixPath("/workflow/input"), True)],
            image="i", gpu=0, workdir=Path("/w"))


def test_host_runtime_passes_argv_and_env_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/bin")
    argv, env = HostRuntime().command(argv=["a", "$(b)"], env={"X": "1"}, binds=[], image="",
                                      gpu=0, workdir=Path("/w"))
    assert argv == ["a", "$(b)"] and env["X"] == "1" and env["PATH"] == "/bin"


# -- the pull-if-missing wrapper, run for real with a stand-in apptainer -------------------

FAKE_APPTAINER = """#!/bin/sh
# stand-in for apptainer: records each call; "pull OUT SRC" writes OUT unless SRC says fail
printf '%s\\n' "$*" >> "$(dirname "$0")/calls.log"
if [ "$1" = pull ]; then
  case "$4" in *fail*) echo partial > "$3"; exit 1;; esac
  echo "image from $4" > "$3"; exit 0
fi
shift  # exec
python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@"
"""


@pytest.fixture
def fake_apptainer(tmp_path: Path) -> Path:
    exe = tmp_path / "bin" / "apptainer"
    exe.parent.mkdir()
    exe.write_text(FAKE_APPTAINER)
    exe.chmod(0o755)
    return exe


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True,
                          text=True, timeout=30)


def test_pull_wrapper_pulls_once_then_execs_the_command(tmp_path: Path,
                                                        fake_apptainer: Path) -> None:
    runtime = ApptainerRuntime(tmp_path / "cache", executable=str(fake_apptainer))
    hostile = ["--flag", "$(touch pwned)", "a b;c", "`id`"]
    argv, env = runtime.command(argv=["prog", *hostile], env={"A": "1"}, binds=[],
                                image=IMAGE, gpu=0, workdir=Path("/w"))
    assert argv[:5] == ["/bin/sh", "-c", PULL_IF_MISSING, PULL_ARGV0,
                        str(runtime.sif_path(IMAGE))]
    first, second = _run(argv, env), _run(argv, env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr
    calls = (fake_apptainer.parent / "calls.log").read_text().splitlines()
    assert [c.split()[0] for c in calls] == ["pull", "exec", "exec"]  # pulled once
    assert calls[0].endswith(f"docker://{IMAGE}")
    assert runtime.sif_path(IMAGE).read_text() == f"image from docker://{IMAGE}\n"
    assert json.loads(first.stdout)[-5:] == ["prog", *hostile]
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    assert [p.name for p in runtime.sif_path(IMAGE).parent.iterdir()] == [
        runtime.sif_path(IMAGE).name]  # no temporary file left behind


def test_failed_pull_leaves_no_image_and_fails_the_job(tmp_path: Path,
                                                       fake_apptainer: Path) -> None:
    runtime = ApptainerRuntime(tmp_path / "cache", executable=str(fake_apptainer))
    argv, env = runtime.command(argv=["prog"], env={}, binds=[], image="org/will-fail:1",
                                gpu=0, workdir=Path("/w"))
    result = _run(argv, env)
    assert result.returncode == 70 and "cannot pull" in result.stderr
    assert os.listdir(tmp_path / "cache") == []  # the half-pulled file was removed
    calls = (fake_apptainer.parent / "calls.log").read_text().splitlines()
    assert [c.split()[0] for c in calls] == ["pull"]  # the program never started
