"""The Dagster face: the pipelines of the ops-db as Dagster definitions.

Owns the catalog of pipelines as Dagster needs them (``catalog``), the partitioned asset of
each step (``factory``) and its materialization metadata (``materialization``), the batch job
of a batched step (``batch_job``, ``batch_events``), the asset checks (``checks``), what a
run's start and failure mean for the ops-db (``run_start``, ``run_failure``), the
placeholder of a pipeline Dagster refused (``not_loaded``), and the instance's run launcher
(``run_launcher``, ``process_liveness``). Sensors and the code location sit above it.
"""
