"""Fixtures of the results tests: the test pipeline applied and its observations ingested."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ccat_assets.opsdb import Pipeline
from ccat_assets.opsdb.session import session_factory
from tests.results.kit import PIPELINE, apply_and_ingest


@pytest.fixture
def applied(ccat_env: Path, tmp_path: Path) -> Path:
    """The test pipeline in the ops-db with three scans ingested; returns the run base dir."""
    apply_and_ingest(tmp_path)
    return tmp_path / "runs"


@pytest.fixture
def session(applied: Path) -> Iterator[Session]:
    """A session on the test ops-db; the test commits what it wants others to see."""
    with session_factory()() as s:
        yield s
        s.rollback()


@pytest.fixture
def location_id(session: Session) -> int:
    return session.scalar(sa.select(Pipeline.processing_location_id)
                          .where(Pipeline.name == PIPELINE))
