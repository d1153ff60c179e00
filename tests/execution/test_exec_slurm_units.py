"""The SLURM backend's pure parts: the sbatch script and command line, and the reading of
squeue/sacct output for states the loopback cluster cannot produce quickly (TIMEOUT,
OUT_OF_MEMORY, NODE_FAIL, PREEMPTED need minutes or cgroups)."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from ccat_assets.execution.jobs import JobSpec
from resources.backends.slurm import SlurmBackend
from resources.backends.slurm_accounting import (
    parse_bytes,
    parse_duration,
    parse_sacct,
    parse_squeue,
    status_from_sacct,
)
from resources.backends.slurm_script import (
    ScriptError,
    render_script,
    resource_options,
    sbatch_argv,
)
from resources.backends.ssh import SSHTarget

RUN = Path("/data/pipelines/chai/scan=s1/calibrate/run-7")


def _spec(**changes) -> JobSpec:
    values = dict(name="ccat-chai-calibrate-7", argv=["/opt/bin/reduce", "--x", "a b"],
                  env={"WORKFLOW_STEP": "calibrate"}, workdir=RUN / "workspace/calibrate",
                  stdout_path=RUN / "logs/stdout.log", stderr_path=RUN / "logs/stderr.log",
                  resources={"cpu": 4, "memory_gb": 7.5, "time_hours": 1.5, "gpu": 2})
    values.update(changes)
    return JobSpec(**values)


def test_sbatch_command_line() -> None:
    argv = sbatch_argv(_spec(), f"{RUN}/logs/.job.sbatch", partition="cpu", account="ccat")
    assert argv == [
        "sbatch", "--parsable", "--job-name=ccat-chai-calibrate-7", "--nodes=1", "--ntasks=1",
        "--cpus-per-task=4", "--mem=7680M", "--time=90", "--gres=gpu:2",
        f"--output={RUN}/logs/stdout.log", f"--error={RUN}/logs/stderr.log",
        f"--chdir={RUN}/workspace/calibrate", "--no-requeue", "--open-mode=append",
        "--partition=cpu", "--account=ccat", f"{RUN}/logs/.job.sbatch"]


def test_resources_default_and_round_up() -> None:
    assert resource_options({}) == ["--nodes=1", "--ntasks=1", "--cpus-per-task=1"]
    assert resource_options({"memory_gb": 0.001, "time_hours": 0.001}) == [
        "--nodes=1", "--ntasks=1", "--cpus-per-task=1", "--mem=2M", "--time=1"]


def test_script_runs_exactly_the_argv_with_exactly_the_env(tmp_path: Path) -> None:
    """The generated script, run by bash, gives the program the same bytes, nothing more."""
    hostile = {"A": "$(echo no)", "B": "`echo no`", "C": "it's \"q\"", "D": "l1\nl2; echo no",
               "E": "", "F": "x=1,y=2"}
    args = ["$HOME", "*", "a'b", "c\nd", "--", ""]
    script = render_script(_spec(argv=["/usr/bin/python3", "-c",
                                       "import json, os, sys; print(json.dumps([sys.argv[1:], "
                                       "dict(os.environ)]))", *args], env=hostile))
    path = tmp_path / "job.sbatch"
    path.write_text(script)
    result = subprocess.run(["/bin/bash", str(path)], capture_output=True, text=True,
                            env={"SLURM_JOB_ID": "42", "LEAK": "host"}, check=True)
    got_args, got_env = json.loads(result.stdout)
    got_env.pop("LC_CTYPE", None)  # set by Python itself (PEP 538), not by the script
    assert got_args == args
    assert got_env == {**hostile, "SLURM_JOB_ID": "42"}  # LEAK did not pass, unset ones absent


@pytest.mark.parametrize(("changes", "message"), [
    ({"name": "ccat-x\n#SBATCH --uid=0"}, "job name"),
    ({"name": "-bad"}, "job name"),
    ({"env": {"BAD NAME": "1"}}, "not a valid name"),
    ({"env": {"A": "x\x00"}}, "NUL"),
    ({"argv": ["X=1", "prog"]}, "holds '='"),
    ({"argv": []}, "argv is empty"),
])
def test_script_rejects_what_it_cannot_express_safely(changes, message) -> None:
    with pytest.raises(ScriptError, match=message):
        render_script(_spec(**changes))


def test_log_path_with_percent_is_rejected() -> None:
    with pytest.raises(ScriptError, match="file-name pattern"):
        sbatch_argv(_spec(stdout_path=Path("/data/100%/stdout.log")), "/s")


def test_script_quotes_every_word() -> None:
    script = render_script(_spec(env={"X": "$(id)"}))
    assert shlex.quote("X=$(id)") in script and "exec" in script


# -- reading squeue / sacct -----------------------------------------------------------------

SACCT = "\n".join([
    "101|101|ccat-a|COMPLETED|0:0|62|01:02.500||None",
    "101.batch|101.batch|batch|COMPLETED|0:0|62|01:02.500|115376128|",
    "102|102|ccat-b|TIMEOUT|0:0|3600|59:59||None",
    "102.batch|102.batch|batch|CANCELLED|0:15|3600|59:59|2048K|",
    "103|103|ccat-c|OUT_OF_MEMORY|0:125|5|00:04||None",
    "103.batch|103.batch|batch|OUT_OF_MEMORY|0:125|5|00:04|1.5G|",
    "104|104|ccat-d|NODE_FAIL|0:0|10|00:01||None",
    "105|105|ccat-e|PREEMPTED|0:0|10|00:01||None",
    "106|106|ccat-f|CANCELLED by 0|0:0|3|00:00||None",
    "107|107|ccat-g|FAILED|3:0|1|00:00.1||None",
    "108|108|ccat-h|FAILED|0:9|1|1-02:03:04||None",
    "109|109|ccat-i|PENDING|0:0|0|00:00||Resources",
])


def test_sacct_states_map_with_reasons_and_metrics() -> None:
    jobs = {k: status_from_sacct(v) for k, v in parse_sacct(SACCT).items()}
    ok = jobs["101"]
    assert (ok.state, ok.exit_code, ok.wall_time_s) == ("completed", 0, 62.0)
    assert ok.cpu_hours == pytest.approx(62.5 / 3600)
    assert ok.peak_memory_gb == pytest.approx(115376128 / 1024**3)
    assert jobs["102"].state == "failed" and "time limit" in jobs["102"].reason
    assert jobs["103"].state == "failed" and "out of memory" in jobs["103"].reason
    assert jobs["103"].peak_memory_gb == pytest.approx(1.5)
    assert jobs["104"].state == "failed" and "node" in jobs["104"].reason
    assert jobs["105"].state == "failed" and "preempted" in jobs["105"].reason
    assert (jobs["106"].state, jobs["106"].reason) == ("cancelled", "cancelled by 0")
    assert (jobs["107"].state, jobs["107"].exit_code, jobs["107"].reason) == (
        "failed", 3, "exit code 3")
    assert (jobs["108"].exit_code, jobs["108"].reason) == (137, "killed by signal 9")
    assert jobs["108"].cpu_hours == pytest.approx((86400 + 7384) / 3600)
    assert jobs["109"].state == "pending"


def test_unknown_slurm_state_is_unknown_not_guessed() -> None:
    status = status_from_sacct(parse_sacct("1|1|n|WEIRD_NEW_STATE|0:0|1|00:01||None")["1"])
    assert status.state == "unknown" and "WEIRD_NEW_STATE" in status.reason


def test_units() -> None:
    assert parse_bytes("112672K") == 112672 * 1024 and parse_bytes("") is None
    assert parse_bytes("2048") == 2048 and parse_bytes("junk") is None
    assert parse_duration("00:00.286") == pytest.approx(0.286)
    assert parse_duration("01:02:03") == 3723 and parse_duration("") is None


def test_squeue_parsing_ignores_error_lines() -> None:
    text = "slurm_load_jobs error: Invalid job id specified\n5|n|RUNNING|None\n6|m|PENDING|Priority"
    jobs = parse_squeue(text)
    assert set(jobs) == {"5", "6"} and jobs["6"].reason == "Priority"


def test_finished_in_queue_waits_for_accounting_then_answers_without_metrics() -> None:
    now = [0.0]
    backend = SlurmBackend(ssh=None, accounting_grace_s=30, clock=lambda: now[0])
    queued = parse_squeue("7|n|COMPLETED|None")["7"]
    assert backend._merge("7", queued, None).state == "running"  # accounting lags
    now[0] = 31.0
    assert backend._merge("7", queued, None).state == "completed"
    running = parse_sacct("7|7|n|RUNNING|0:0|1|00:01||None")["7"]
    assert backend._merge("7", parse_squeue("7|n|RUNNING|None")["7"], running).state == "running"
    assert backend._merge("8", None, None).state == "unknown"


def test_ssh_target_never_shows_its_secrets() -> None:
    target = SSHTarget(host="login", user="ccat", private_key="-----KEY-----secretbody",
                       passphrase="pass-phrase-123")
    assert "secretbody" not in repr(target) and "pass-phrase-123" not in repr(target)
    assert SSHTarget.parse("bob@login:2200", default_user="x").label == "bob@login:2200"
    assert SSHTarget.parse("login", default_user="x", default_port=22).label == "x@login:22"
    with pytest.raises(ValueError, match="host"):
        SSHTarget.parse("bob@login:ssh", default_user="x")


def test_extra_sbatch_args_from_settings_reach_every_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """A site's own sbatch options (a QOS, a reservation; the jobs-in-flight benchmark holds
    its jobs with ``--hold``) are split as a shell would and checked like partition and
    account."""
    from ccat_assets.settings import Settings

    monkeypatch.setenv("CCAT_WORKFLOW_MANAGER_SLURM_EXTRA_SBATCH_ARGS",
                       "--qos=long --comment='ccat standing'")
    backend = SlurmBackend.from_settings(Settings())
    assert backend.extra_sbatch_args == ["--qos=long", "--comment=ccat standing"]
    argv = sbatch_argv(_spec(), "/tmp/job.sbatch", extra=backend.extra_sbatch_args)
    assert argv[-3:] == ["--qos=long", "--comment=ccat standing", "/tmp/job.sbatch"]
    with pytest.raises(ScriptError):
        sbatch_argv(_spec(), "/tmp/job.sbatch", extra=["--comment=a\nb"])
