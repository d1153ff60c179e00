"""The sbatch script and the ``sbatch`` command line of one job: pure functions.

This is the only place a job's argv and environment become shell text, and it only quotes:
every argument and every ``NAME=value`` is passed through ``shlex.quote``, so quotes,
``$(...)``, backticks, ``;`` and newlines in a value reach the program as the same bytes and
are never evaluated. The script's body is one ``exec env -i ...`` line, so the program sees
exactly the job's environment (plus a fixed set of SLURM variables), not the login shell's.

Scheduler options go on the ``sbatch`` command line rather than into ``#SBATCH`` lines:
sbatch's own parser of those lines knows double quotes only, while the command line is parsed
by the remote POSIX shell, for which ``shlex.quote`` is exact.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from ccat_assets.execution.jobs import JobSpec

#: Variables SLURM sets for the job that the program (or Apptainer's ``--nv``) needs: kept
#: when set, absent when not. Fixed text, expanded in the job, never user data.
SLURM_PASSTHROUGH = ("SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_ARRAY_JOB_ID",
                     "SLURM_ARRAY_TASK_ID", "SLURM_CPUS_PER_TASK",
                     "SLURM_MEM_PER_NODE", "SLURM_JOB_PARTITION", "SLURM_JOB_GPUS",
                     "CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "ROCR_VISIBLE_DEVICES")
_JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=+-]{0,199}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ScriptError(ValueError):
    """The job cannot be expressed safely as an sbatch job (names the field and the problem)."""


def _check_text(field: str, value: str) -> str:
    if not value or any(ord(c) < 32 or c == "\x7f" for c in value):
        raise ScriptError(f"{field} {value!r} is empty or holds control characters")
    return value


def _check_log_path(field: str, value: str) -> str:
    """SLURM expands ``%j``-style patterns in log paths; a literal ``%`` would be rewritten."""
    if "%" in _check_text(field, value):
        raise ScriptError(f"{field} {value!r} holds '%', which SLURM reads as a file-name "
                          "pattern; choose a PIPELINE_BASE_DIR without '%'")
    return value


def validate_job_name(name: str) -> str:
    if not _JOB_NAME.fullmatch(name):
        raise ScriptError(
            f"job name {name!r} must be 1-200 characters of [A-Za-z0-9._=+-], "
            "starting with a letter or digit")
    return name


def _exec_words(spec: JobSpec, passthrough: Sequence[str] = SLURM_PASSTHROUGH,
                drop_env: Sequence[str] = ()) -> list[str]:
    """``exec env -i NAME=value ... argv``, every value quoted, after validating the spec;
    ``passthrough`` names variables of the job's own environment to keep when set."""
    validate_job_name(spec.name)
    if not spec.argv:
        raise ScriptError(f"job {spec.name}: argv is empty")
    if "=" in spec.argv[0]:
        raise ScriptError(f"job {spec.name}: the program {spec.argv[0]!r} holds '=', which "
                          "env(1) would read as a variable; give its path without '='")
    for value in spec.argv:
        if "\x00" in value:
            raise ScriptError(f"job {spec.name}: an argument holds a NUL byte")
    words = ["exec", "env", "-i"]
    words += [f'${{{name}+"{name}=${name}"}}' for name in passthrough]  # fixed text
    for name in sorted(set(spec.env) - set(drop_env)):
        value = spec.env[name]
        if not _ENV_NAME.fullmatch(name):
            raise ScriptError(f"job {spec.name}: environment variable name {name!r} is not "
                              "a valid name ([A-Za-z_][A-Za-z0-9_]*)")
        if "\x00" in value:
            raise ScriptError(f"job {spec.name}: environment variable {name} holds a NUL byte")
        words.append(shlex.quote(f"{name}={value}"))
    return words + [shlex.quote(arg) for arg in spec.argv]


def render_script(spec: JobSpec) -> str:
    """The batch script: a comment and one quoted ``exec env -i NAME=value ... argv`` line."""
    return (
        "#!/bin/bash\n"
        f"# CCAT Workflow Manager job {spec.name}; generated, every value shell-quoted.\n"
        + " \\\n    ".join(_exec_words(spec)) + "\n"
    )


def _member_lines(spec: JobSpec, passthrough: Sequence[str] = SLURM_PASSTHROUGH,
                  drop_env: Sequence[str] = ()) -> list[str]:
    """Enter the member's working directory, send its output to its own log files, exec."""
    workdir = _check_text("workdir", str(spec.workdir))
    stdout = _check_text("stdout_path", str(spec.stdout_path))
    stderr = _check_text("stderr_path", str(spec.stderr_path))
    return [f"cd -- {shlex.quote(workdir)} || exit 111",
            f"exec >>{shlex.quote(stdout)} 2>>{shlex.quote(stderr)}",
            " \\\n  ".join(_exec_words(spec, passthrough, drop_env))]


def render_task_script(spec: JobSpec, *, passthrough: Sequence[str] = (),
                       drop_env: Sequence[str] = ()) -> str:
    """A POSIX ``sh`` script running one member of an array whose scheduler cannot give each
    member its own command (a Kubernetes Indexed Job runs one script per index)."""
    return ("#!/bin/sh\n"
            f"# CCAT Workflow Manager job {spec.name}; generated, every value shell-quoted.\n"
            + "\n".join(_member_lines(spec, passthrough, drop_env)) + "\n")


def render_array_script(name: str, specs: Sequence[JobSpec]) -> str:
    """The script of a job array: one ``case`` branch per member, chosen by
    ``SLURM_ARRAY_TASK_ID``, that enters the member's working directory, sends its output
    to the member's own log files and execs the member's command like :func:`render_script`.
    """
    validate_job_name(name)
    lines = ["#!/bin/bash",
             f"# CCAT Workflow Manager job array {name} ({len(specs)} members); generated, "
             "every value shell-quoted.",
             'case "${SLURM_ARRAY_TASK_ID:-}" in']
    for index, spec in enumerate(specs):
        lines += [f"  {index})", *("    " + line for line in _member_lines(spec)), "    ;;"]
    lines += ['  *) echo "no member ${SLURM_ARRAY_TASK_ID:-} in this array" >&2; exit 112;;',
              "esac", ""]
    return "\n".join(lines)


def resource_options(resources: Mapping[str, Any]) -> list[str]:
    """``resource_requirements`` -> sbatch options (cpu, memory_gb, time_hours, gpu)."""
    options = ["--nodes=1", "--ntasks=1"]
    cpu = int(resources.get("cpu", 1) or 1)
    if cpu < 1:
        raise ScriptError(f"resources.cpu must be >= 1, got {cpu}")
    options.append(f"--cpus-per-task={cpu}")
    if resources.get("memory_gb") is not None:
        memory_mb = math.ceil(float(resources["memory_gb"]) * 1024)
        if memory_mb < 1:
            raise ScriptError(f"resources.memory_gb must be > 0, got {resources['memory_gb']}")
        options.append(f"--mem={memory_mb}M")
    if resources.get("time_hours") is not None:
        minutes = max(1, math.ceil(float(resources["time_hours"]) * 60))
        options.append(f"--time={minutes}")
    gpu = int(resources.get("gpu", 0) or 0)
    if gpu > 0:
        options.append(f"--gres=gpu:{gpu}")
    return options


def _site_options(partition: str, account: str, extra: Sequence[str]) -> list[str]:
    """The site's partition, account and extra options, checked."""
    options = []
    if partition:
        options.append(f"--partition={_check_text('partition', partition)}")
    if account:
        options.append(f"--account={_check_text('account', account)}")
    return options + [_check_text("extra sbatch option", option) for option in extra]


def sbatch_argv(spec: JobSpec, script_path: str, *, partition: str = "", account: str = "",
                extra: Sequence[str] = ()) -> list[str]:
    """``sbatch --parsable`` with the job's name, resources, log paths and working dir."""
    argv = ["sbatch", "--parsable", f"--job-name={validate_job_name(spec.name)}",
            *resource_options(spec.resources),
            f"--output={_check_log_path('stdout_path', str(spec.stdout_path))}",
            f"--error={_check_log_path('stderr_path', str(spec.stderr_path))}",
            f"--chdir={_check_text('workdir', str(spec.workdir))}",
            "--no-requeue", "--open-mode=append"]
    return argv + _site_options(partition, account, extra) + [
        _check_text("script path", script_path)]


def sbatch_array_argv(name: str, specs: Sequence[JobSpec], script_path: str, log_dir: str, *,
                      max_parallel: int | None = None, partition: str = "", account: str = "",
                      extra: Sequence[str] = ()) -> list[str]:
    """``sbatch --parsable --array=0-(N-1)[%max_parallel]`` for the members of one step.

    The members share one resource request (they are one step with one config); each
    member's program writes to its own log files (see :func:`render_array_script`), the
    array's own output only catches what the shell says before that.
    """
    if not specs:
        raise ScriptError(f"job array {name}: no members")
    resources = specs[0].resources
    for spec in specs[1:]:
        if spec.resources != resources:
            raise ScriptError(f"job array {name}: members ask for different resources "
                              f"({resources} and {spec.resources})")
    if max_parallel is not None and max_parallel < 1:
        raise ScriptError(f"job array {name}: max_parallel must be >= 1, got {max_parallel}")
    throttle = f"%{max_parallel}" if max_parallel else ""
    log_dir = _check_log_path("log directory", log_dir).rstrip("/")
    argv = ["sbatch", "--parsable", f"--job-name={validate_job_name(name)}",
            f"--array=0-{len(specs) - 1}{throttle}", *resource_options(resources),
            f"--output={log_dir}/.{name}-%a.out", f"--error={log_dir}/.{name}-%a.out",
            f"--chdir={log_dir}", "--no-requeue", "--open-mode=append"]
    return argv + _site_options(partition, account, extra) + [
        _check_text("script path", script_path)]
