"""Database fixtures for the grouping tests: every database test runs on SQLite and PostgreSQL.

PostgreSQL runs when ``CCAT_TEST_DATABASE_URL`` is set, in a schema of its own per test
module (the database is shared); under ``CCAT_REQUIRE_INTEGRATION=1`` a missing or
unreachable database fails instead of skipping.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from ccat_assets.grouping import resolve_subgroups
from ccat_assets.opsdb import (
    ExecutedObsUnit,
    InstrumentModule,
    ObservingProgram,
    ObsUnit,
    PackageState,
    RawDataPackage,
    Source,
)
from ccat_assets.opsdb.migrate import upgrade
from ccat_assets.opsdb.session import create_engine, normalize_url

UTC = dt.UTC


def _postgres_url_or_skip() -> str:
    url = os.environ.get("CCAT_TEST_DATABASE_URL")
    required = os.environ.get("CCAT_REQUIRE_INTEGRATION") == "1"
    if not url:
        if required:
            pytest.fail("CCAT_REQUIRE_INTEGRATION=1 but CCAT_TEST_DATABASE_URL is not set")
        pytest.skip("PostgreSQL: set CCAT_TEST_DATABASE_URL to run")
    try:
        engine = create_engine(url)
        with engine.connect():
            pass
        engine.dispose()
    except sa.exc.OperationalError as exc:
        if required:
            pytest.fail(f"CCAT_TEST_DATABASE_URL is unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    return url


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)],
)
def db_url(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated, empty ops-db for this test module; dropped afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('opsdb') / 'ops.db'}"
        upgrade(url)
        yield url
        return
    base = _postgres_url_or_skip()
    schema = f"t_grouping_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = (sa.make_url(normalize_url(base))
           .update_query_dict({"options": f"-csearch_path={schema}"})
           .render_as_string(hide_password=False))
    try:
        upgrade(url)
        yield url
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="module")
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: sa.Engine) -> Iterator[Session]:
    """A session rolled back after the test, so tests sharing a module's data stay apart."""
    with sessionmaker(engine)() as session:
        yield session
        session.rollback()


@dataclass(frozen=True)
class World:
    """Names to ids of the observation data built by :func:`build_world`."""

    packages: dict[str, int]
    modules: dict[str, int]

    def names(self, ids: object) -> set[str]:
        by_id = {v: k for k, v in self.packages.items()}
        return {by_id[i] for i in ids}  # type: ignore[attr-defined]


T0 = dt.datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def build_world(session: Session) -> World:
    """A small observatory: three sources, three lines, two modules, six scans, ten packages.

    Chosen so every operator has matches and non-matches, including missing values (a scan
    with no source, line, program or start time; a package with no module) and JSON values of
    the wrong type ("461.04" as a string, "n/a" for tau, null).
    """
    modules = {name: InstrumentModule(name=name) for name in ("CHAI", "PrimeCam")}
    nearby = ObservingProgram(name="Nearby Galaxies")
    galactic = ObservingProgram(name="Galactic Center")
    sources = {name: Source(name=name) for name in ("NGC253", "M82", "SgrB2")}
    units = {
        "ou-ngc253-co43": ObsUnit(name="ou-ngc253-co43", source=sources["NGC253"],
                                  line_id="CO43", observing_program=nearby),
        "ou-ngc253-ci10": ObsUnit(name="ou-ngc253-ci10", source=sources["NGC253"],
                                  line_id="CI10", observing_program=nearby),
        "ou-m82-co43": ObsUnit(name="ou-m82-co43", source=sources["M82"], line_id="CO43",
                               observing_program=nearby),
        "ou-sgrb2-cont": ObsUnit(name="ou-sgrb2-cont", source=sources["SgrB2"],
                                 observing_program=galactic),
        "ou-skydip": ObsUnit(name="ou-skydip"),
    }
    plus2 = dt.timezone(dt.timedelta(hours=2))
    scans = {
        "s1": ("ou-ngc253-co43", dt.datetime(2024, 5, 1, 23, 30, tzinfo=UTC)),
        "s2": ("ou-ngc253-co43", dt.datetime(2024, 5, 2, 0, 30, tzinfo=UTC)),
        "s3": ("ou-ngc253-ci10", dt.datetime(2024, 5, 2, 3, 0, tzinfo=UTC)),
        # 01:00 at +02:00 is 23:00 UTC the day before: obs_date must say 2024-05-02.
        "s4": ("ou-m82-co43", dt.datetime(2024, 5, 3, 1, 0, tzinfo=plus2)),
        "s5": ("ou-sgrb2-cont", dt.datetime(2024, 5, 4, 10, 0, tzinfo=UTC)),
        "s6": ("ou-skydip", None),
    }
    scan_rows = {name: ExecutedObsUnit(name=name, obs_unit=units[unit], start_time=start)
                 for name, (unit, start) in scans.items()}
    archived, waiting = PackageState.ARCHIVED, PackageState.WAITING
    packages = [
        ("p01", "s1", "CHAI", archived, {
            "observation": {"frequency_ghz": 461.04, "lo_ghz": 455}, "weather": {"tau": 0.05},
            "quality": "good", "calibrated": True, "tags": ["deep", "co"]}),
        ("p02", "s1", "PrimeCam", archived, {"observation": {"frequency_ghz": 350},
                                            "quality": "good"}),
        ("p03", "s2", "CHAI", archived, {
            "observation": {"frequency_ghz": 461.04}, "weather": {"tau": 0.12},
            "quality": "bad", "calibrated": False}),
        ("p04", "s2", "CHAI", waiting, {"observation": {"frequency_ghz": 461.04}}),
        ("p05", "s3", "CHAI", archived, {"observation": {"frequency_ghz": 492.16},
                                        "weather": {"tau": 0.08}}),
        ("p06", "s4", "CHAI", archived, {"observation": {"frequency_ghz": "461.04"}}),
        ("p07", "s4", "CHAI", PackageState.FAILED, {"observation": {"frequency_ghz": None}}),
        ("p08", "s5", "PrimeCam", archived, {"observation": {"frequency_ghz": 850},
                                            "weather": {"tau": "n/a"}}),
        ("p09", "s6", None, PackageState.TRANSFERRING, {}),
        ("p10", "s5", "PrimeCam", archived, {"observation": {"frequency_ghz": 1000.0},
                                            "quality": "good_100%"}),
    ]
    rows = {}
    for i, (name, scan, module, state, meta) in enumerate(packages):
        rows[name] = RawDataPackage(
            name=name, executed_obs_unit=scan_rows[scan],
            instrument_module=modules[module] if module else None, state=state,
            checksum=f"sha256:{name}", relative_path=f"raw/{name}", meta=meta,
            size_bytes=(i + 1) * 1000,
            updated_at=T0 + dt.timedelta(minutes=i))
    session.add_all(rows.values())
    session.commit()
    return World({n: r.id for n, r in rows.items()}, {n: m.id for n, m in modules.items()})


@pytest.fixture(scope="module")
def world(engine: sa.Engine) -> World:
    with sessionmaker(engine)() as session:
        return build_world(session)


Matcher = Callable[..., set[str]]


@pytest.fixture
def matching(session: Session, world: World) -> Matcher:
    """``matching(rules, **kwargs)``: the names of the packages the rules select."""

    def run(rules: list[Any], **kwargs: Any) -> set[str]:
        subgroups = resolve_subgroups(session, filter_rules=rules, group_by=[], **kwargs)
        assert len(subgroups) <= 1
        return world.names(subgroups[0].raw_data_package_ids) if subgroups else set()

    return run

