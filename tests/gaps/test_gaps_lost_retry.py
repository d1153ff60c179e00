"""A retry Dagster announced and never launched is launched by the gap sensor.

Dagster's retry daemon can skip a failed run when it reads the RUN_FAILURE event before the
run's status (``sensors/lost_retries.py``). The state that leaves (a FAILURE run tagged
``dagster/will_retry=true`` with no retry) is built here directly: the race itself depends on
two processes' timing under load and is seen in the load benchmark's chaos mode.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from ccat_assets.dagster_face import retry_tags
from ccat_assets.definitions import load_definitions
from ccat_assets.opsdb.types import utcnow
from sensors import lost_retries as lost
from tests.gaps.gapkit import PIPELINE, queue, scan_key, tick

WILL_RETRY = {"dagster/will_retry": "true"}


def failed_run(defs: dg.Definitions, instance: dg.DagsterInstance,
               request: dg.RunRequest, tags: dict[str, str]) -> dg.DagsterRun:
    """The run of ``request`` created, failed, and tagged as the failing process tags it."""
    (run_id,) = queue(defs, instance, [request])
    run = instance.get_run_by_id(run_id)
    assert run is not None
    instance.report_run_failed(run)
    instance.add_run_tags(run_id, tags)
    failed = instance.get_run_by_id(run_id)
    assert failed is not None and failed.status == dg.DagsterRunStatus.FAILURE
    return failed


def test_a_lost_retry_is_launched_once_with_the_retry_tags(
        continuous: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        first = tick(defs, instance)
        request = next(r for r in first.run_requests or []
                       if r.tags["ccat/step"] == "calibrate"
                       and r.partition_key == scan_key("scan-001"))
        run = failed_run(defs, instance, request, WILL_RETRY)

        # Within the grace Dagster's own retry daemon may still act.
        assert lost.lost_retries(instance, PIPELINE, now=utcnow()) == []
        later = utcnow() + lost.LOST_RETRY_AFTER + dt.timedelta(seconds=1)
        assert [r.run_id for r in lost.lost_retries(instance, PIPELINE, now=later)] == \
            [run.run_id]

        retry = lost.retry_request(run)
        assert retry.run_key == f"lost-retry:{run.run_id}"
        assert retry.job_name == run.job_name
        assert retry.partition_key == scan_key("scan-001")
        assert retry.asset_selection == sorted(run.asset_selection or ())
        assert retry.tags["dagster/parent_run_id"] == run.run_id
        assert retry.tags["dagster/root_run_id"] == run.run_id
        assert retry.tags["dagster/retry_number"] == "1"
        assert {k: retry.tags[k] for k in ("ccat/pipeline", "ccat/step", "ccat/sub_group",
                                           "ccat/reason", "dagster/priority")} == \
            {k: request.tags[k] for k in ("ccat/pipeline", "ccat/step", "ccat/sub_group",
                                          "ccat/reason", "dagster/priority")}
        assert "dagster/will_retry" not in retry.tags

        # The gap sensor launches it (the grace shortened instead of waiting 30 s) ...
        monkeypatch.setattr(lost, "LOST_RETRY_AFTER", dt.timedelta(0))
        second = tick(defs, instance, first.cursor)
        launched = [r for r in second.run_requests or [] if r.run_key == retry.run_key]
        assert len(launched) == 1 and launched[0].tags == retry.tags
        # ... once: with the retry created, the failed run has its retry.
        queue(defs, instance, launched)
        third = tick(defs, instance, second.cursor)
        assert not [r for r in third.run_requests or []
                    if (r.run_key or "").startswith("lost-retry:")]


def test_runs_dagster_will_not_retry_or_already_retried_are_left_alone(
        continuous: Path) -> None:
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        requests = [r for r in tick(defs, instance).run_requests or []
                    if r.tags["ccat/step"] == "calibrate"]
        failed_run(defs, instance, requests[0], {"dagster/will_retry": "false"})  # not retried
        retried = failed_run(defs, instance, requests[1], WILL_RETRY)
        queue(defs, instance, [lost.retry_request(retried)])
        later = utcnow() + lost.LOST_RETRY_AFTER + dt.timedelta(seconds=1)
        assert lost.lost_retries(instance, PIPELINE, now=later) == []


def test_retry_tag_names_are_dagsters_own() -> None:
    """The names are spelled out for the stored runs; an upgrade renaming them fails here."""
    from dagster._core.storage import tags as dagster_tags

    for name in ("WILL_RETRY_TAG", "AUTO_RETRY_RUN_ID_TAG", "PARENT_RUN_ID_TAG",
                 "ROOT_RUN_ID_TAG", "RETRY_NUMBER_TAG"):
        assert getattr(retry_tags, name) == getattr(dagster_tags, name), name
