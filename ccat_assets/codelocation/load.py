"""The code location read from the ops-db: the catalog of applied pipelines, built into
Dagster definitions (``ccat_assets.definitions:defs`` and the forkserver's prebuilt copy)."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from ccat_assets.codelocation.location import assemble
from ccat_assets.dagster_face.catalog import PipelineDef, UnreadablePipeline, load_catalog_checked
from ccat_assets.dagster_face.not_loaded import log_not_loaded
from ccat_assets.opsdb.migrate import require_current
from ccat_assets.opsdb.session import get_engine, session_scope
from ccat_assets.settings import get_settings


def build_definitions(catalog: list[PipelineDef],
                      unreadable: Sequence[UnreadablePipeline] = ()) -> dg.Definitions:
    """Pure: the whole code location for a catalog snapshot, without the pipelines Dagster
    refuses (each logged)."""
    result = assemble(catalog, get_settings(), unreadable)
    for item in result.not_loaded:
        log_not_loaded(item)
    return result.definitions


def load_definitions() -> dg.Definitions:
    """The code location as the ops-db's catalog says now (the schema must be current)."""
    require_current(get_engine())
    with session_scope() as session:
        catalog, unreadable = load_catalog_checked(session)
    return build_definitions(catalog, unreadable)
