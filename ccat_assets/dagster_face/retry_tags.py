"""The tags Dagster's run retries are told apart by, named once.

Dagster 1.13 defines them in an internal module (``dagster._core.storage.tags``); they are
part of its stored runs, so they are spelled out here and
``tests/gaps/test_gaps_lost_retry.py`` checks them against Dagster's own.
"""

#: Set on a failed run that Dagster's retry daemon will retry ("true") or not.
WILL_RETRY_TAG = "dagster/will_retry"
#: Set on a failed run once Dagster's daemon launched its retry: the retry's run id.
AUTO_RETRY_RUN_ID_TAG = "dagster/auto_retry_run_id"
#: On a retry (or any re-execution): the run it re-executes.
PARENT_RUN_ID_TAG = "dagster/parent_run_id"
#: On a retry: the first run of its chain.
ROOT_RUN_ID_TAG = "dagster/root_run_id"
#: On a retry: how many retries came before it, plus one.
RETRY_NUMBER_TAG = "dagster/retry_number"
