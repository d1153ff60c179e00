"""Batches run on the execution tests' backends: share their fixtures."""

from tests.execution.conftest import (  # noqa: F401 - fixtures
    make_services,
    slurm_partition,
    slurm_settings_env,
    slurm_target,
)
from tests.gaps.conftest import served_env  # noqa: E402, F401 - fixture
