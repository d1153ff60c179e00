"""Container runtimes: the ``apptainer exec`` argv builder, and ``host`` for development.

``host`` runs the same argv with the same contract environment and directories, the paths
mapped to the host's, and says so in every run's metadata. Neither builds a shell string
from user data.

Two Apptainer behaviours shape the argv (``docs/container_contract.md`` explains them to
container authors):

* ``--env`` is a string-to-string flag: a value holding ``=`` is read as CSV and split at
  commas (``--env A=x=1,B=2`` sets two variables), and surrounding double quotes are
  stripped. Only values made of a conservative set of characters go through ``--env``; any
  other value is passed as ``APPTAINERENV_<NAME>`` in the process environment, which
  Apptainer hands to the container unparsed (and which ``--cleanenv`` keeps).
* Apptainer evaluates injected variables in a shell-like interpreter by default (``$HOME``,
  ``$(...)``); ``--no-eval`` (Apptainer >= 1.1) makes every value literal.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

#: Host variables a program needs to start at all under the host runtime.
HOST_PASSTHROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH",
                    "VIRTUAL_ENV", "USER", "LOGNAME")
#: Host variables the ``apptainer`` process itself needs (not the container: ``--cleanenv``).
APPTAINER_PROCESS_ENV = ("PATH", "HOME", "TMPDIR")
#: Values made only of these characters survive ``--env NAME=value`` unchanged.
PLAIN_ENV_VALUE = re.compile(r"[A-Za-z0-9_./:@%+~^ -]*")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Prefix under which Apptainer passes a variable into the container verbatim.
APPTAINERENV_PREFIX = "APPTAINERENV_"

#: Runs first when the image may be missing: pulls it into the cache under a temporary name
#: and renames it into place (so a half-pulled image is never used), then execs the real
#: command. Fixed text; the image path, its source and the command are positional
#: parameters, never spliced into the script.
PULL_IF_MISSING = (
    'sif=$1 src=$2 app=$3; shift 3; '
    'if [ ! -s "$sif" ]; then '
    'mkdir -p "$(dirname "$sif")" && tmp=$(mktemp "$sif.partial.XXXXXX") && '
    '"$app" pull --force "$tmp" "$src" && mv -f "$tmp" "$sif" '
    '|| { rm -f "$tmp"; echo "apptainer: cannot pull $src into $sif" >&2; exit 70; }; '
    'fi; exec "$@"'
)
PULL_ARGV0 = "ccat-apptainer-pull"


def host_base_env() -> dict[str, str]:
    return {k: os.environ[k] for k in HOST_PASSTHROUGH if k in os.environ}


class HostRuntime:
    """Run the program directly; for development, tests and the demo."""

    name = "host"
    in_container = False

    def command(
        self, *, argv: list[str], env: dict[str, str], binds: list[tuple[Path, Any, bool]],
        image: str, gpu: int, workdir: Path,
    ) -> tuple[list[str], dict[str, str]]:
        return list(argv), {**host_base_env(), **env}


def sif_name(image_ref: str) -> str:
    """A cache file name for an image reference, e.g. ``ghcr.io_ccatobs_chai_1.0.0.sif``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", image_ref.removeprefix("docker://")) + ".sif"


def image_source(image_ref: str) -> str:
    """What ``apptainer pull`` fetches: the reference, ``docker://`` unless it has a scheme."""
    return image_ref if "://" in image_ref else f"docker://{image_ref}"


def split_env(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(variables safe for ``--env``, variables for ``APPTAINERENV_*``); bad names rejected."""
    plain, verbatim = {}, {}
    for name, value in env.items():
        if not ENV_NAME.fullmatch(name):
            raise ValueError(f"environment variable name {name!r} is not [A-Za-z_][A-Za-z0-9_]*")
        if "\x00" in value:
            raise ValueError(f"environment variable {name} holds a NUL byte")
        (plain if PLAIN_ENV_VALUE.fullmatch(value) else verbatim)[name] = value
    return plain, verbatim


def _bind_spec(host: Path, container: PurePosixPath, read_only: bool) -> str:
    for side in (str(host), str(container)):
        if "," in side or ":" in side:
            raise ValueError(f"bind path {side!r} holds ',' or ':', which apptainer's --bind "
                             "syntax cannot express; choose a PIPELINE_BASE_DIR without them")
    return f"{host}:{container}" + (":ro" if read_only else "")


class ApptainerRuntime:
    """``apptainer exec --cleanenv --containall --no-eval`` with the contract's binds."""

    name = "apptainer"
    in_container = True

    def __init__(self, sif_cache_dir: Path, executable: str = "apptainer", *,
                 pull_missing: bool = True):
        self.sif_cache_dir = Path(sif_cache_dir)
        self.executable = executable
        self.pull_missing = pull_missing

    def sif_path(self, image_ref: str) -> Path:
        return self.sif_cache_dir / sif_name(image_ref)

    def pull_argv(self, image_ref: str) -> list[str]:
        """Pull an image into the cache by hand (jobs do it themselves when it is missing)."""
        return [self.executable, "pull", str(self.sif_path(image_ref)), image_source(image_ref)]

    def exec_argv(
        self, *, argv: list[str], env: dict[str, str], binds: list[tuple[Path, Any, bool]],
        image: str, gpu: int, workdir: Path,
    ) -> tuple[list[str], dict[str, str]]:
        """The ``apptainer exec`` argv and the variables it needs in its own environment."""
        plain, verbatim = split_env(env)
        args = [self.executable, "exec", "--cleanenv", "--containall", "--no-eval"]
        pwd = "/workflow"
        for host, container, read_only in binds:
            container = PurePosixPath(container)
            args += ["--bind", _bind_spec(Path(host), container, read_only)]
            if workdir == host or Path(host) in workdir.parents:
                pwd = str(container / workdir.relative_to(host).as_posix())
        for name in sorted(plain):
            args += ["--env", f"{name}={plain[name]}"]
        if gpu > 0:
            args.append("--nv")
        args += ["--pwd", pwd, str(self.sif_path(image)), *argv]
        process_env = {k: v for k, v in host_base_env().items() if k in APPTAINER_PROCESS_ENV}
        process_env.update({APPTAINERENV_PREFIX + k: v for k, v in sorted(verbatim.items())})
        return args, process_env

    def command(
        self, *, argv: list[str], env: dict[str, str], binds: list[tuple[Path, Any, bool]],
        image: str, gpu: int, workdir: Path,
    ) -> tuple[list[str], dict[str, str]]:
        args, process_env = self.exec_argv(argv=argv, env=env, binds=binds, image=image,
                                           gpu=gpu, workdir=workdir)
        if self.pull_missing:
            args = ["/bin/sh", "-c", PULL_IF_MISSING, PULL_ARGV0, str(self.sif_path(image)),
                    image_source(image), self.executable, *args]
        return args, process_env
