"""Bubblewrap standing in for Apptainer, which cannot be installed here.

The runtime builds the real ``apptainer exec`` argv (``resources.apptainer``) and runs it
with bubblewrap: every ``--bind`` becomes a bind in the same order (read-only for ``:ro``),
so a program sees exactly the ``/workflow`` layout, environment and read-only mounts the
Apptainer argv asks for. It is a test stand-in, named so in every run's metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resources.apptainer import ApptainerRuntime

PROGRAMS = Path(__file__).resolve().parent / "programs"


class BwrapStandInRuntime:
    """Builds the real ``apptainer exec`` argv, then runs it with bubblewrap: each ``--bind``
    becomes a bind (read-only for ``:ro``), ``--env`` and ``APPTAINERENV_*`` become
    ``--setenv`` on a cleared environment, ``--pwd`` the working directory. The "image" is
    the host's /usr, read-only, and the program directory at /opt/ccat."""

    name = "bwrap-stand-in"
    in_container = True

    def __init__(self, sif_cache: Path):
        self.apptainer = ApptainerRuntime(sif_cache, pull_missing=False)
        self.seen_argv: list[str] = []

    def command(self, **kwargs: Any) -> tuple[list[str], dict[str, str]]:
        argv, process_env = self.apptainer.command(**kwargs)
        self.seen_argv = argv
        out = ["bwrap", "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib",
               "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
               "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
               "--ro-bind", str(PROGRAMS), "/opt/ccat",
               "--unshare-all", "--die-with-parent", "--clearenv"]
        args = iter(argv[2:])  # after "apptainer exec"
        for arg in args:
            if arg in ("--cleanenv", "--containall", "--no-eval"):
                continue
            if arg == "--bind":
                host, container, *mode = next(args).split(":")
                out += ["--ro-bind" if mode == ["ro"] else "--bind", host, container]
            elif arg == "--env":
                name, _, value = next(args).partition("=")
                out += ["--setenv", name, value]
            elif arg == "--pwd":
                pwd = next(args)
            elif arg.startswith("--"):
                raise AssertionError(f"the stand-in does not know {arg}")
            else:
                program = list(args)  # arg is the image; the rest is the command
                break
        for key, value in process_env.items():
            if key.startswith("APPTAINERENV_"):
                out += ["--setenv", key.removeprefix("APPTAINERENV_"), value]
        return [*out, "--setenv", "PATH", "/usr/bin:/bin", "--chdir", pwd, "--", *program], {
            "PATH": "/usr/bin:/bin"}
