"""The code location: ``ccat_assets.definitions:defs``, built from the ops-db when it loads.

A pipeline applied while Dagster runs shows up when the location reloads (``ccat-wm apply``
asks the running webserver to reload it). Each pipeline is built and checked on its own
(``ccat_assets.codelocation.location``): one that Dagster refuses is left out, logged and shown as a
placeholder asset, and everything else loads.
"""

from __future__ import annotations

import dagster as dg

from ccat_assets.codelocation.load import build_definitions, load_definitions
from ccat_assets.codelocation.prebuilt_definitions import built_for_this_worker
from ccat_assets.codelocation.preloaded_workers import preload_run_workers
from ccat_assets.settings import get_settings

__all__ = ["build_definitions", "defs", "load_definitions"]


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by Dagster (and on every reload); importing this module reads nothing. In a
    code server, its run workers start preloaded from then on; a worker forked preloaded
    finds them built by its forkserver."""
    built = built_for_this_worker()
    if built is not None:
        return built
    preload_run_workers(get_settings().preloaded_run_workers)
    return load_definitions()
