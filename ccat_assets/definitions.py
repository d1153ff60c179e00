"""The code location: ``ccat_assets.definitions:defs``, built from the ops-db when it loads.

A pipeline applied while Dagster runs shows up when the location reloads (``ccat-wm apply``
asks the running webserver to reload it).
"""

from __future__ import annotations

import dagster as dg

from ccat_assets.batch_job import build_batch_jobs
from ccat_assets.catalog import PipelineDef, load_catalog
from ccat_assets.factory import (
    build_pipeline_definitions,
    build_pipeline_jobs,
    build_raw_data_asset,
)
from ccat_assets.opsdb.migrate import require_current
from ccat_assets.opsdb.session import get_engine, session_scope
from ccat_assets.settings import get_settings
from resources.execution import ExecutionResource
from resources.opsdb import OpsDBResource
from sensors import build_automation


def build_definitions(catalog: list[PipelineDef]) -> dg.Definitions:
    """Pure: the whole code location for a catalog snapshot."""
    opsdb = OpsDBResource()
    groupings = sorted({p.grouping for p in catalog})
    # built once: the sensors that launch them must target these very objects
    jobs = {p.name: [*build_pipeline_jobs(p), *build_batch_jobs(p)] for p in catalog}
    return dg.Definitions.merge(
        dg.Definitions(
            assets=[build_raw_data_asset(g) for g in groupings],
            jobs=[job for pipeline_jobs in jobs.values() for job in pipeline_jobs],
            resources={"opsdb": opsdb, "execution": ExecutionResource(opsdb=opsdb)},
            executor=dg.in_process_executor,
        ),
        *[build_pipeline_definitions(p) for p in catalog],
        build_automation(catalog, get_settings(), jobs),
    )


def load_definitions() -> dg.Definitions:
    require_current(get_engine())
    with session_scope() as session:
        catalog = load_catalog(session)
    return build_definitions(catalog)


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by Dagster (and on every reload); importing this module reads nothing."""
    return load_definitions()
