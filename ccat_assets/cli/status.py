"""Whether the code location loads each pipeline, for ``ccat-wm pipelines``.

Computed by assembling the location exactly as Dagster's code server does
(:func:`ccat_assets.codelocation.location.assemble`), so the CLI and the running location agree on
the same ops-db without asking a running Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ccat_assets.codelocation.location import assemble
from ccat_assets.dagster_face.catalog import PipelineDef, UnreadablePipeline
from ccat_assets.settings import get_settings

LOADED = "loaded"
NOT_LOADED = "not_loaded"


def load_status(catalog: Sequence[PipelineDef], unreadable: Sequence[UnreadablePipeline] = (),
                ) -> dict[str, dict[str, Any]]:
    """Pipeline name -> ``{"status", "reason", "field"}``."""
    result = assemble(catalog, get_settings(), unreadable)
    status: dict[str, dict[str, Any]] = {
        name: {"status": LOADED, "reason": None, "field": None} for name in result.loaded}
    for item in result.not_loaded:
        status[item.pipeline] = {"status": NOT_LOADED, "reason": item.reason,
                                 "field": item.field}
    return status
