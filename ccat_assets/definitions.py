"""The code location: ``ccat_assets.definitions:defs``, built from the ops-db when it loads.

A pipeline applied while Dagster runs shows up when the location reloads (``ccat-wm apply``
asks the running webserver to reload it). Each pipeline is built and checked on its own
(``ccat_assets.codelocation.location``): one that Dagster refuses is left out, logged and shown as a
placeholder asset, and everything else loads.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from ccat_assets.codelocation.location import assemble
from ccat_assets.codelocation.preloaded_workers import preload_run_workers
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
    require_current(get_engine())
    with session_scope() as session:
        catalog, unreadable = load_catalog_checked(session)
    return build_definitions(catalog, unreadable)


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by Dagster (and on every reload); importing this module reads nothing. In a
    code server, its run workers start preloaded from then on."""
    preload_run_workers(get_settings().preloaded_run_workers)
    return load_definitions()
