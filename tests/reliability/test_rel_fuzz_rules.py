"""Filter rules and group_by, tried systematically on a real (SQLite) ops-db: random rule trees
built from real and wrong tables, columns, operators, JSON paths and values of every type.
``validate_filter_rules`` returns problems that each start with the position of the field at
fault, and ``resolve_subgroups`` raises ``GroupingError`` with exactly those problems; rules
it finds valid run as SQL without error, and every sub-group key they give is safe.
Deterministic (``derandomize``)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from ccat_assets.grouping import DIMENSIONS, GroupingError, resolve_subgroups
from ccat_assets.grouping.columns import COLUMNS
from ccat_assets.grouping.joins import JOIN_GRAPH
from ccat_assets.grouping.values import OPERATORS
from ccat_assets.opsdb import (
    ExecutedObsUnit,
    ObsUnit,
    PackageState,
    RawDataPackage,
    Source,
    migrate,
)
from ccat_assets.opsdb.session import create_engine
from ccat_assets.results.contract import RunLayout
from tests.reliability.strategies import HOSTILE, TEXT

FUZZ = settings(max_examples=200, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
SAFE_KEY = re.compile(r"[A-Za-z0-9._=-]+")
POSITION = re.compile(r"^filter_rules(\[\d+\]|\.[^:\s]+)*: \S")
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                   st.floats(allow_nan=True, allow_infinity=True), TEXT,
                   st.sampled_from(["2024-05-01T00:00:00Z", "ARCHIVED", "archived", "CHAI",
                                    "%", "NGC%", "\\"]))
VALUE = st.one_of(SCALAR, st.lists(SCALAR, max_size=4), st.dictionaries(TEXT, SCALAR, max_size=2))
PLAUSIBLE = st.one_of(
    st.sampled_from(["2024-05-01T00:00:00Z", "ARCHIVED", "CHAI", "NGC%", "scan-1", 400, 1.5,
                     True, None]),
    st.lists(st.sampled_from(["ARCHIVED", "scan-1", "NGC253"]), min_size=1, max_size=3),
    st.lists(st.integers(0, 10**6), min_size=2, max_size=2),
    st.lists(st.sampled_from(["2024-05-01T00:00:00Z", "2024-06-01T00:00:00Z"]), min_size=2,
             max_size=2))
COLUMN_NAMES = sorted({c for table in COLUMNS.values() for c in table})
LEAF = st.fixed_dictionaries(
    {"table": st.one_of(st.sampled_from(list(JOIN_GRAPH)), SCALAR),
     "column": st.one_of(st.sampled_from(COLUMN_NAMES), SCALAR),
     "operator": st.one_of(st.sampled_from(list(OPERATORS)), SCALAR)},
    optional={"value": VALUE,
              "json_path": st.one_of(st.sampled_from(["observation.frequency_ghz", "label",
                                                      "a[0]", "a..b", "$.a", ""]), SCALAR),
              "extra": SCALAR})
#: Leaves naming a real column of a real table, so that many trees are valid and run as SQL.
REAL_LEAF = st.sampled_from([(t, c) for t in COLUMNS for c in COLUMNS[t]]).flatmap(
    lambda tc: st.fixed_dictionaries(
        {"table": st.just(tc[0]), "column": st.just(tc[1]),
         "operator": st.sampled_from(list(OPERATORS)), "value": VALUE | PLAUSIBLE},
        optional={"json_path": st.sampled_from(["observation.frequency_ghz", "label"])}))
RULE = st.recursive(
    st.one_of(LEAF, REAL_LEAF, REAL_LEAF, SCALAR),
    lambda inner: st.one_of(
        st.builds(lambda op, items: {op: items}, st.sampled_from(["any", "all"]),
                  st.one_of(st.lists(inner, max_size=3), inner)),
        st.builds(lambda item: {"not": item}, inner),
        st.dictionaries(st.sampled_from(["any", "all", "not", "table"]), inner, max_size=2)),
    max_leaves=6)
RULES = st.one_of(st.lists(RULE, max_size=4), RULE)
REAL_RULES = st.lists(st.recursive(
    REAL_LEAF,
    lambda inner: st.builds(lambda op, items: {op: items}, st.sampled_from(["any", "all"]),
                            st.lists(inner, min_size=1, max_size=3))
    | st.builds(lambda item: {"not": item}, inner),
    max_leaves=4), max_size=3)
GROUP_BY = st.lists(st.one_of(st.sampled_from(sorted(DIMENSIONS)),
                              st.sampled_from(["metadata.label", "metadata.a..b", "nope"])),
                    max_size=2)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """An ops-db with one scan per hostile name, metadata included."""
    url = f"sqlite:///{tmp_path_factory.mktemp('rules') / 'opsdb.sqlite'}"
    migrate.upgrade(url)
    engine = create_engine(url)
    start = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    with sessionmaker(engine)() as session:
        for i, name in enumerate(HOSTILE[:12]):
            unit = ObsUnit(name=f"ou-{i}", source=Source(name=name or f"empty-{i}"),
                           line_id=name[:64])
            scan = ExecutedObsUnit(name=f"scan-{i}", obs_unit=unit, start_time=start)
            session.add(RawDataPackage(
                name=f"pkg-{i}", executed_obs_unit=scan, state=PackageState.ARCHIVED,
                checksum=f"c{i}", relative_path=f"raw/{i}",
                meta={"label": name, "observation": {"frequency_ghz": 400 + i}}))
        session.commit()
        yield session
    engine.dispose()


def _key_is_safe(key: str) -> None:
    assert SAFE_KEY.fullmatch(key) and key not in (".", ".."), key
    base = Path("/srv/ccat/pipelines")
    root = RunLayout.for_run(base, "p", key, "s", 1).root
    assert root.is_relative_to(base) and root.parent.parent.name == key


@FUZZ
@given(rules=RULES, group_by=GROUP_BY)
def test_rules_are_valid_and_run_or_are_rejected_by_field(session: Session, rules,
                                                          group_by) -> None:
    try:
        found = resolve_subgroups(session, filter_rules=rules, group_by=group_by)
    except GroupingError as error:
        assert error.errors
        for message in error.errors:
            assert POSITION.match(message) or message.startswith("group_by"), message
        return
    finally:
        session.rollback()
    for sub in found:
        _key_is_safe(sub.key)
    assert sum(s.n_packages for s in found) <= 12
    assert session.scalar(sa.select(sa.func.count()).select_from(RawDataPackage)) == 12


@FUZZ
@given(rules=REAL_RULES, group_by=st.lists(st.sampled_from(sorted(DIMENSIONS)), max_size=2,
                                           unique=True))
def test_rules_on_real_columns_run_or_are_rejected_by_field(session: Session, rules,
                                                            group_by) -> None:
    """The same property where most trees name real columns, so many of them run as SQL."""
    test_rules_are_valid_and_run_or_are_rejected_by_field.hypothesis.inner_test(
        session, rules, group_by)
