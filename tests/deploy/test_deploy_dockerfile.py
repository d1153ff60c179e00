"""The Dockerfile and .dockerignore, checked by structure.

A structural check only: no container engine runs on the machines of this suite (the docker
client is there, the daemon is not), so the image is never built here. What it checks is what
a review would: pinned base, two stages with the wheel built in the first and installed with
constraints.txt in the second, a non-root numeric USER, a HEALTHCHECK, exec-form CMD running
the code server, OCI labels, no container runtime, and a build context that holds exactly
what the COPY lines need.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib

import pytest
import yaml

from tests.deploy.dockerfile import ROOT, Instruction, exec_form, instructions, stages

PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim-bookworm$")
CODE_SERVER = ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "3030",
               "-m", "ccat_assets.definitions"]


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return instructions((ROOT / "Dockerfile").read_text())


def test_base_image_is_pinned_and_never_latest(dockerfile: list[Instruction]) -> None:
    global_args = {}
    for word, args in dockerfile:
        if word == "FROM":
            break
        if word == "ARG" and "=" in args:
            key, value = args.split("=", 1)
            global_args[key] = value
    froms = [args for word, args in dockerfile if word == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    for args in froms:
        image, _, stage = args.partition(" AS ")
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], image)
        assert PINNED_PYTHON.match(resolved), f"{resolved!r} is not an exact slim-bookworm tag"
        assert "latest" not in resolved
        assert stage, f"every stage is named: FROM {args}"


def test_wheel_is_built_first_and_installed_with_constraints(
    dockerfile: list[Instruction],
) -> None:
    build, runtime = stages(dockerfile)[0], stages(dockerfile)[-1]
    assert build[0][1].endswith(" AS build")
    build_runs = " ".join(args for word, args in build if word == "RUN")
    assert "pip" in build_runs and "wheel" in build_runs and "--no-deps" in build_runs
    runtime_runs = [args for word, args in runtime if word == "RUN"]
    install = next(r for r in runtime_runs if "pip install" in r)
    assert "-c /tmp/constraints.txt" in install and "from=build" in install
    assert "/wheels/" in install


def test_runtime_runs_as_a_numeric_non_root_user(dockerfile: list[Instruction]) -> None:
    users = [args for word, args in stages(dockerfile)[-1] if word == "USER"]
    assert users, "the runtime stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric, so Kubernetes can verify runAsNonRoot"
    values = yaml.safe_load((ROOT / "helm/ccat-workflow-manager/values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid)


def test_healthcheck_cmd_and_ports_agree(dockerfile: list[Instruction]) -> None:
    runtime = dict(stages(dockerfile)[-1])
    health = runtime["HEALTHCHECK"]
    assert "CMD [" in health, "HEALTHCHECK CMD in exec form"
    probe = exec_form(health[health.index("["):])
    assert probe[:3] == ["dagster", "api", "grpc-health-check"]
    assert exec_form(runtime["CMD"]) == CODE_SERVER
    assert "ENTRYPOINT" not in runtime, "the chart's `args` must replace CMD, not append to it"
    assert runtime["EXPOSE"] == "3030" == probe[probe.index("-p") + 1]
    values = yaml.safe_load((ROOT / "helm/ccat-workflow-manager/values.yaml").read_text())
    deployment = values["dagster"]["dagster-user-deployments"]["deployments"][0]
    assert deployment["port"] == 3030
    assert deployment["codeServerArgs"] == CODE_SERVER[-2:]


def test_oci_labels_and_version(dockerfile: list[Instruction]) -> None:
    runtime = stages(dockerfile)[-1]
    labels = " ".join(args for word, args in runtime if word == "LABEL")
    for key in ("title", "description", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    version = dict(a.split("=", 1) for w, a in runtime if w == "ARG" and "=" in a)["VERSION"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((ROOT / "helm/ccat-workflow-manager/Chart.yaml").read_text())
    assert version == project == chart["appVersion"]


def test_no_container_runtime_in_the_image(dockerfile: list[Instruction]) -> None:
    text = " ".join(args for _, args in dockerfile).lower()
    assert "apptainer" not in text and "singularity" not in text


def ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics for our patterns: the last matching pattern wins."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if body.startswith("**/"):
            hit = any(fnmatch.fnmatch(p, body[3:]) for p in parts)
        else:
            hit = any(fnmatch.fnmatch(p, body) for p in prefixes)
        if hit:
            result = not negate
    return result


def test_dockerignore_keeps_what_copy_needs_and_nothing_local(
    dockerfile: list[Instruction],
) -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    sources = [src for word, args in dockerfile if word == "COPY" and "--from" not in args
               for src in args.split()[:-1]]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: missing in the repository"
        assert not ignored(src, patterns), f"COPY {src}: excluded by .dockerignore"
    for local in (".venv/bin/python", ".git/config", "var/demo", ".ccat/opsdb.sqlite", "tests",
                  "ccat_assets/__pycache__/x.pyc", "bench", "helm", "dagster.yaml"):
        assert ignored(local, patterns), f"{local} would be sent to the build"
