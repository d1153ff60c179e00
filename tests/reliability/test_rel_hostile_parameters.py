"""Step parameters and environment values of any content reach the program exactly as written,
through the whole path (YAML spec, validation, ops-db, manifest, local backend, host runtime)
and never through a shell: the program echoes what it received and a ``$(touch ...)`` never
runs. Hypothesis draws the values (deterministic, few examples: each one is a real run).
SQLite only; the path is the same on PostgreSQL apart from the storage of the values."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccat_assets.cli import cli
from ccat_assets.execution.execute import execute_partition
from ccat_assets.opsdb import RunStatus
from tests.factories import write_observations, write_spec
from tests.reliability.conftest import KEY, PIPELINE, SCAN, STEP, fault_spec, local_services
from tests.reliability.strategies import HOSTILE

PRINTABLE = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                    max_size=60)
PARAM_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63),
              st.floats(allow_nan=False, allow_infinity=False), PRINTABLE,
              st.sampled_from([h for h in HOSTILE if "\x00" not in h])),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(PRINTABLE, inner, max_size=3),
    max_leaves=8)
ENV_NAMES = st.from_regex(r"HOSTILE_[A-Z0-9_]{1,10}", fullmatch=True)


@pytest.fixture
def db_url(tmp_path: Path):
    """This module runs on SQLite only (it overrides the two-database fixture)."""
    from ccat_assets.opsdb import migrate
    from ccat_assets.opsdb.session import dispose_engines

    url = f"sqlite:///{tmp_path / 'opsdb.sqlite'}"
    migrate.upgrade(url)
    yield url
    dispose_engines()


@settings(max_examples=4, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(params=st.dictionaries(PRINTABLE, PARAM_VALUE, min_size=1, max_size=6),
       env=st.dictionaries(ENV_NAMES, PRINTABLE, max_size=4))
def test_parameters_and_environment_arrive_verbatim(ccat_env: Path, tmp_path: Path,
                                                     params, env) -> None:
    pwned = Path(f"/tmp/ccat-pwned-{uuid.uuid4().hex[:10]}")
    shellish = {"dollar": f"$(touch {pwned})", "backticks": f"`touch {pwned}`",
                "chain": f"x; touch {pwned} && echo 'q' \"dq\" \\ \n next line",
                "glob": "*", "tilde": "~root", "option": "--help"}
    params = {**params, "hostile": shellish}
    env = {**env, "HOSTILE_SHELL": shellish["chain"], "HOSTILE_DOLLAR": shellish["dollar"]}
    runner = CliRunner()
    spec = write_spec(tmp_path / f"p-{uuid.uuid4().hex[:6]}.yaml",
                      fault_spec(tmp_path / "processing", params, env))
    applied = runner.invoke(cli, ["apply", "--no-reload", str(spec)])
    assert applied.exit_code == 0, applied.output
    if not (tmp_path / "archive").exists():
        ingested = runner.invoke(cli, ["ingest", str(write_observations(tmp_path / "archive",
                                                                        [SCAN]))])
        assert ingested.exit_code == 0, ingested.output

    outcome = execute_partition(local_services(), pipeline_name=PIPELINE, step_name=STEP,
                                sub_group_key=KEY, dagster_run_id=None)
    assert outcome.status == RunStatus.COMPLETED
    echo = json.loads((Path(outcome.run_dir) / "output/science/echo.json").read_text())
    assert echo["parameters"] == params
    assert echo["env"] == env
    assert not pwned.exists()
