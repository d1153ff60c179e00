"""Sub-group values of any kind and content become keys that are always safe on disk: only
``[A-Za-z0-9._=-]``, never a ``.`` or ``..`` path component, and the run directory built from
a key stays inside the pipelines directory. Checked with ``RunLayout`` (which refuses an
escape) and by resolving the path. Deterministic (``derandomize``)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ccat_assets.grouping import subgroup_key
from ccat_assets.results.contract import RunLayout
from tests.reliability.strategies import HOSTILE

SAFE_KEY = re.compile(r"[A-Za-z0-9._=-]+")
BASE = Path("/srv/ccat/pipelines")
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.sampled_from(HOSTILE),
    st.text(max_size=200),  # lone surrogates included
    st.datetimes(timezones=st.just(dt.UTC)), st.dates(),
    st.builds(lambda parts: "/".join(parts), st.lists(st.sampled_from(["..", ".", "a", ""]),
                                                      max_size=6)))
DIMS = st.lists(st.sampled_from(["source", "line", "executed_obs_unit", "metadata.label",
                                 "instrument_module"]), min_size=0, max_size=3, unique=True)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(data=st.data(), dims=DIMS)
def test_keys_are_safe_path_components_that_stay_inside(data, dims) -> None:
    values = data.draw(st.lists(VALUES, min_size=len(dims), max_size=len(dims)))
    key = subgroup_key(dims, values)
    assert SAFE_KEY.fullmatch(key), key
    assert key not in (".", "..") and "/" not in key and "..." not in key
    root = RunLayout.for_run(BASE, "pipe", key, "step", 7).root
    assert root.is_relative_to(BASE) and root.resolve().is_relative_to(BASE)
    assert root.relative_to(BASE).parts == ("pipe", key, "step", "run-7")
