"""Settings from the environment, with defaults that run on a laptop with no services.

Every setting is an environment variable with the prefix ``CCAT_WORKFLOW_MANAGER_`` (as in the
CCAT deployment), except the ops-db URL, which is ``CCAT_OPS_DB_URL`` because other CCAT
components share it. ``docs/configuration.md`` lists them all.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """The workflow manager's settings; read once per process with :func:`get_settings`."""

    model_config = SettingsConfigDict(env_prefix="CCAT_WORKFLOW_MANAGER_", extra="ignore")

    home: Path = Field(
        default=Path(".ccat"),
        description="Local state folder: default ops-db file, pipeline workspace and job dirs.",
    )
    ops_db_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CCAT_OPS_DB_URL", "CCAT_WORKFLOW_MANAGER_OPS_DB_URL"),
        description="SQLAlchemy URL of the ops-db; default a SQLite file under HOME.",
    )
    hpc_backend: Literal["local", "slurm", "kubernetes"] = "local"
    container_runtime: Literal["apptainer", "host"] = Field(
        default="host",
        description="apptainer in production; host runs the same argv without a container.",
    )
    pipeline_base_dir: Path | None = Field(
        default=None, description="Root of run directories; default HOME/pipelines."
    )
    processing_location_id: str = Field(
        default="1",
        description="The PROCESSING DataLocation this instance serves: its id or its name.",
    )
    sif_cache_dir: Path = Path("/data/sif-cache")
    local_jobs_dir: Path | None = Field(
        default=None, description="Job directories of the local backend; default HOME/jobs."
    )
    local_max_parallel: int = Field(default=2, ge=1)

    slurm_host: str = "127.0.0.1"
    slurm_port: int = 22
    slurm_user: str = "ccat"
    slurm_key_path: Path | None = None
    slurm_known_hosts: Path | None = None
    slurm_partition: str = ""
    slurm_account: str = ""
    slurm_poll_min_seconds: float = 5.0
    slurm_poll_max_seconds: float = 60.0
    slurm_private_key: SecretStr | None = Field(
        default=None, description="SSH private key contents (a secret), instead of KEY_PATH.")
    slurm_key_passphrase: SecretStr | None = None
    slurm_remote_jobs_dir: str = Field(
        default="", description="Batch scripts on the login node; empty: beside each job's log.")
    slurm_extra_sbatch_args: str = Field(
        default="", description="More sbatch options for every job, split like a shell "
                                "would (e.g. '--qos=long --reservation=ccat').")
    staging_ssh_user: str = ""
    staging_ssh_key_path: Path | None = None
    staging_ssh_known_hosts: Path | None = None

    k8s_namespace: str = "ccat-workflows"
    k8s_image: str = ""
    k8s_workspace_pvc: str = Field(default="", description="PVC holding PIPELINE_BASE_DIR.")
    k8s_workspace_host_path: str = Field(default="", description="Or a hostPath holding it.")
    k8s_workspace_mount_path: str = Field(
        default="", description="Where pods mount it; empty: PIPELINE_BASE_DIR's path.")
    k8s_kubeconfig: Path | None = None
    k8s_context: str = ""
    k8s_service_account: str = ""
    k8s_image_pull_secret: str = ""

    dagster_webserver_url: str = Field(
        default="http://127.0.0.1:3000",
        description="Where `ccat-wm apply` asks Dagster to reload the code location.",
    )
    code_location_name: str = "ccat_assets.definitions"

    job_poll_seconds: float = Field(default=1.0, gt=0)
    preloaded_run_workers: bool = Field(
        default=True,
        description="A code server forks its run workers from a process that has already "
                    "imported Dagster and this code location, instead of starting each one "
                    "as a new interpreter (docs/operations.md).",
    )
    sensor_max_runs_per_tick: int = Field(default=50, ge=1)
    sensor_interval_seconds: int = Field(default=30, ge=1)
    gap_full_reload_seconds: int = Field(
        default=300, ge=0,
        description="A gap sensor reloads its pipeline's whole state at least this often, "
                    "even when the cheap change check saw nothing (0: every tick).",
    )
    retire_after_days: float = Field(
        default=0, ge=0,
        description="A gap sensor removes a sub-group from its pipeline's Dagster partitions "
                    "once it has been fully reduced for this many days (0: never); the "
                    "ops-db keeps its runs, products and lineage (docs/scale.md).",
    )
    retire_max_per_tick: int = Field(
        default=1000, ge=1, description="Partitions one gap sensor tick retires at most.")
    reconcile_orphan_age_seconds: int = Field(
        default=3600, ge=0,
        description="Reconciliation fails an in-flight run with no Dagster run this instance "
                    "knows (started by the CLI or a script) only after it has not changed for "
                    "this long, and only when its job is no longer live.",
    )
    reconcile_retry_grace_seconds: int = Field(
        default=120, ge=0,
        description="How long after a Dagster run failed with an announced automatic retry "
                    "reconciliation waits for that retry to start before it ends the run's "
                    "rows (and cancels their jobs) so the gap sensor can run them again.",
    )
    workspace_gc_min_free_gb: float = Field(
        default=10.0, ge=0,
        description="The workspace janitor frees intermediates when the filesystem of "
                    "PIPELINE_BASE_DIR has less free space than this (GB, 10^9 bytes).",
    )
    workspace_gc_min_free_percent: float = Field(
        default=5.0, ge=0, le=100,
        description="... or less free space than this percentage of its size.",
    )
    workspace_gc_interval_seconds: int = Field(
        default=300, ge=10, description="How often the workspace janitor sensor runs.")
    workspace_gc_max_deletions: int = Field(
        default=2000, ge=1, description="Intermediate copies deleted per janitor pass at most.")
    workspace_janitor_running: bool = Field(
        default=True, description="Whether the workspace janitor sensor starts running.")

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def database_url(self) -> str:
        return self.ops_db_url or f"sqlite:///{self.home / 'opsdb.sqlite'}"

    @property
    def pipelines_dir(self) -> Path:
        return (self.pipeline_base_dir or self.home / "pipelines").expanduser().resolve()

    @property
    def jobs_dir(self) -> Path:
        return (self.local_jobs_dir or self.home / "jobs").expanduser().resolve()


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings (tests call ``get_settings.cache_clear()`` after changing env)."""
    return Settings()
