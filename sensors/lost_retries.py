"""Retries Dagster announced and never launched, launched by the gap sensor instead.

Dagster's retry daemon (``EventLogConsumerDaemon``) reads RUN_FAILURE events after a cursor
and retries each failed run whose status is FAILURE and whose ``dagster/will_retry`` tag is
true. The process that fails a run stores the event first and updates the run's status and
tag after, in separate transactions (``handle_new_event`` in Dagster 1.13). A consumer
iteration that falls between the two sees the event, finds the run still STARTED and without
the tag, skips it, and moves its cursor past the event: the run is tagged
``will_retry=true`` a moment later and never retried. Under load (the load benchmark's
chaos mode on two busy cores) this happened to about one killed run worker in ten.

The lost retry's rows stayed in flight until reconciliation gave up on the retry
(``RECONCILE_RETRY_GRACE_SECONDS``) and failed them, and the gap sensor then ran the pairs
again as new HPC jobs: the first jobs' work was lost. Here the pipeline's gap sensor, once a
failed run of the pipeline has waited ``LOST_RETRY_AFTER`` for its announced retry, launches
that retry itself: a run of the same job with the same config, selection and partition, and
the retry tags Dagster would have given it (``dagster/parent_run_id``, ``dagster/root_run_id``,
``dagster/retry_number``). Like Dagster's retry it re-attaches to the failed run's rows and
jobs (:func:`ccat_assets.dagster_face.run_start.retry_chain`), so nothing is submitted twice.
Its run key (``lost-retry:<run id>``) launches it once; should Dagster's daemon act as well
after all, the second run finds the pairs claimed by the first and waits for them.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from ccat_assets.dagster_face.retry_tags import (
    PARENT_RUN_ID_TAG,
    RETRY_NUMBER_TAG,
    ROOT_RUN_ID_TAG,
    WILL_RETRY_TAG,
)
from sensors.reconcile import retry_of

#: Dagster's retry daemon looks every 5 s; a retry not there after this was lost.
LOST_RETRY_AFTER = dt.timedelta(seconds=30)
#: Failed runs looked at: those updated within this window (older ones are reconciliation's).
LOOK_BACK = dt.timedelta(hours=1)
#: Dagster's tags carried into the retry; the others say how the failed run was launched
#: and ended (run key, sensor, tick, failure reason, will_retry), or are set again below.
_KEPT_DAGSTER_TAGS = ("dagster/priority",)


def lost_retries(instance: dg.DagsterInstance, pipeline: str, *,
                 now: dt.datetime) -> list[dg.DagsterRun]:
    """Failed runs of ``pipeline`` that Dagster will retry, ended at least
    ``LOST_RETRY_AFTER`` ago, with no retry run."""
    records = instance.get_run_records(filters=dg.RunsFilter(
        statuses=[dg.DagsterRunStatus.FAILURE],
        tags={"ccat/pipeline": pipeline, WILL_RETRY_TAG: "true"},
        updated_after=now - LOOK_BACK))
    lost = []
    for record in records:
        run = record.dagster_run
        ended = record.end_time
        if ended is None or now.timestamp() - ended < LOST_RETRY_AFTER.total_seconds():
            continue
        if retry_of(instance, run) is None:
            lost.append(run)
    return lost


def retry_request(run: dg.DagsterRun) -> dg.RunRequest:
    """The retry Dagster would have launched for ``run``: the same job, config, selection and
    partition, with the retry tags that make it re-attach to ``run``'s rows and jobs."""
    tags = {k: v for k, v in run.tags.items()
            if not k.startswith("dagster/") or k in _KEPT_DAGSTER_TAGS}
    retry_number = int(run.tags.get(RETRY_NUMBER_TAG, "0")) + 1
    tags |= {PARENT_RUN_ID_TAG: run.run_id,
             ROOT_RUN_ID_TAG: run.tags.get(ROOT_RUN_ID_TAG) or run.run_id,
             RETRY_NUMBER_TAG: str(retry_number)}
    return dg.RunRequest(
        run_key=f"lost-retry:{run.run_id}",
        job_name=run.job_name,
        run_config=run.run_config,
        tags=tags,
        partition_key=run.tags.get("dagster/partition"),
        asset_selection=sorted(run.asset_selection) if run.asset_selection else None,
        asset_check_selection=(sorted(run.asset_check_selection)
                               if run.asset_check_selection else None),
    )
