"""The workspace janitor: frees intermediates of the processing location under disk pressure.

Each tick refreshes which intermediate copies nothing will read again (DELETION_POSSIBLE) and,
only when free space is below ``WORKSPACE_GC_MIN_FREE_GB`` / ``_PERCENT``, deletes the oldest
of them (at most ``WORKSPACE_GC_MAX_DELETIONS`` per tick) and records each deletion. It never
launches runs; the same pass is ``ccat-wm workspace gc``. Rules:
``ccat_assets/results/storage_lifecycle.py``.
"""

from __future__ import annotations

import dagster as dg

from ccat_assets.opsdb.session import session_factory
from ccat_assets.results.storage_lifecycle import GcReport, LocationNotFound, Thresholds, run_gc
from ccat_assets.settings import get_settings

SENSOR_NAME = "workspace_janitor"


def janitor_pass(dry_run: bool = False) -> GcReport:
    """One pass with the configured settings (the sensor's body, callable from tests)."""
    settings = get_settings()
    return run_gc(
        session_factory(settings.database_url),
        location_setting=settings.processing_location_id,
        workspace=settings.pipelines_dir,
        thresholds=Thresholds(settings.workspace_gc_min_free_gb,
                              settings.workspace_gc_min_free_percent),
        dry_run=dry_run,
        max_deletions=settings.workspace_gc_max_deletions,
    )


def build_workspace_janitor_sensor() -> dg.SensorDefinition:
    settings = get_settings()

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=settings.workspace_gc_interval_seconds,
        default_status=(dg.DefaultSensorStatus.RUNNING if settings.workspace_janitor_running
                        else dg.DefaultSensorStatus.STOPPED),
        description=("Frees intermediate products nothing will read again, oldest first, "
                     "when the processing location's disk runs low; records each deletion."),
        tags={"ccat/kind": "storage"},
    )
    def _workspace_janitor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        try:
            report = janitor_pass()
        except LocationNotFound as exc:
            return dg.SkipReason(str(exc))
        for copy in report.deleted:
            context.log.info(f"deleted intermediate {copy.path} (product {copy.product_id})")
        for failure in report.failed:
            context.log.warning(f"could not delete {failure}")
        return dg.SkipReason(report.summary())

    return _workspace_janitor
