"""Execution backends implementing :class:`ccat_assets.execution.jobs.Backend`.

``local`` (a detached supervised process), ``slurm`` (sbatch over SSH, with ``ssh``,
``slurm_script`` and ``slurm_accounting``) and ``kubernetes`` (a batch/v1 Job, with
``kubernetes_manifest``). ``docs/backends.md`` describes them.
"""
