"""Fixtures of the reliability tests: a one-step pipeline whose program misbehaves on request,
execution services on the local backend, and the ops-db and file checks every fault test
ends with.

The SLURM fixtures come from ``tests/execution/conftest.py`` (loopback cluster started by
``bash scripts/services/up.sh``; ``. scripts/services/env.sh``).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ccat_assets.execution.execute import ExecutionServices, PollPolicy
from ccat_assets.grouping import subgroup_key
from ccat_assets.opsdb import (
    IN_FLIGHT_STATUSES,
    DataProduct,
    ExecutedReductionStep,
    PhysicalCopy,
    PhysicalCopyStatus,
)
from ccat_assets.opsdb.session import session_factory, session_scope
from ccat_assets.settings import get_settings
from resources.apptainer import HostRuntime
from resources.backends.local import LocalBackend
from resources.staging import make_stager
from tests.execution.conftest import (  # noqa: F401 - fixtures shared with the SLURM tests
    apply_and_ingest,
    slurm_partition,
    slurm_settings_env,
    slurm_target,
)
from tests.factories import pipeline_spec

PROGRAM = Path(__file__).parent / "programs" / "fault_program.py"
PIPELINE, STEP = "chai_test", "calibrate"
SCAN = ("scan-001", "NGC253", "CO43")
KEY = subgroup_key(["executed_obs_unit"], [SCAN[0]])


def fault_spec(processing_dir: Path, params: dict[str, Any] | None = None,
               environment: dict[str, str] | None = None) -> dict[str, Any]:
    """One final per-scan step running the fault program with ``params``."""
    spec = pipeline_spec(processing_dir)
    step = spec["pipelines"][0]["steps"][0]
    spec["pipelines"][0]["steps"] = [step]
    spec["software"] = spec["software"][:1]
    step["config"]["command"] = [sys.executable, str(PROGRAM)]
    step["config"]["parameters"] = dict(params or {})
    step["config"]["resources"] = {"cpu": 1, "memory_gb": 0.5, "time_hours": 0.1}
    if environment:
        step["config"]["environment"] = environment
    return spec


@pytest.fixture
def make_pipeline(ccat_env: Path, tmp_path: Path) -> Callable[..., Path]:
    """Apply the fault pipeline with the given parameters and ingest one scan."""
    def build(params: dict[str, Any] | None = None, *, processing_dir: Path | None = None,
              environment: dict[str, str] | None = None) -> Path:
        spec = fault_spec(processing_dir or tmp_path / "processing", params, environment)
        apply_and_ingest(tmp_path, spec, [SCAN])
        return tmp_path
    return build


def local_services(log: Callable[[str], None] | None = None,
                   poll: PollPolicy | None = None) -> ExecutionServices:
    settings = get_settings()
    return ExecutionServices(
        sessions=session_factory(), backend=LocalBackend(settings.jobs_dir, 2),
        runtime=HostRuntime(), stager_factory=make_stager, base_dir=settings.pipelines_dir,
        log=log or (lambda _line: None), poll=poll or PollPolicy(min_s=0.1, max_s=0.5))


def runs() -> list[ExecutedReductionStep]:
    with session_scope() as session:
        rows = list(session.scalars(
            sa.select(ExecutedReductionStep).order_by(ExecutedReductionStep.id)))
        session.expunge_all()
        return rows


def product_types(run_id: int) -> Counter[str]:
    with session_scope() as session:
        types = session.scalars(sa.select(DataProduct.data_product_type)
                                .filter_by(executed_reduction_step_id=run_id))
        return Counter(t.value for t in types)


def product_paths(run_id: int) -> list[str]:
    with session_scope() as session:
        return list(session.scalars(sa.select(DataProduct.relative_path)
                                    .filter_by(executed_reduction_step_id=run_id)))


def staged_copies() -> list[PhysicalCopy]:
    with session_scope() as session:
        rows = list(session.scalars(sa.select(PhysicalCopy).where(
            PhysicalCopy.status == PhysicalCopyStatus.STAGED)))
        session.expunge_all()
        return rows


def assert_no_live_in_flight_rows() -> None:
    """After a test nothing may claim to be in flight: every row is terminal."""
    stuck = [(r.id, r.status.value) for r in runs() if r.status in IN_FLIGHT_STATUSES]
    assert not stuck, f"rows left in flight without a live run: {stuck}"


def job_dirs() -> list[str]:
    jobs = get_settings().jobs_dir
    return sorted(p.name for p in jobs.iterdir() if not p.name.startswith(".")) \
        if jobs.is_dir() else []
