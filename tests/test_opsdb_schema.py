"""The migrations build exactly the schema the models describe, on both databases, so a
model changed without its migration (or the reverse) fails here and not in production."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ccat_assets.opsdb import Base
from ccat_assets.opsdb.session import create_engine


def test_migrated_schema_equals_the_models(db_url: str) -> None:
    engine = create_engine(db_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []
