"""Running a (step, sub-group) to its end: claim, stage, submit, poll, collect.

Owns the run lifecycle (``execute``), batches as one array job (``batch``), the backend
interface (``jobs``) and how a job is watched (``job_watch``, ``output_tail``,
``run_progress``), the manifest and staged inputs a program reads (``manifest``,
``staging_types``, ``upstream_view``), the PENDING rows of queued runs (``queued_rows``) and
the decision which in-flight rows lost their run (``reconcile``). The backends themselves are
the ``resources`` package, one layer up.
"""
