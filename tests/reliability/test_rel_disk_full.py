"""The processing location runs out of space, on a real size-limited filesystem: a small
tmpfs mounted for the test (root with CAP_SYS_ADMIN; the test skips, or fails under
``CCAT_REQUIRE_INTEGRATION=1``, where mounting is not permitted).

* Staging into a full processing location fails the run with the reason, leaves no
  half-copied file and no STAGED PhysicalCopy; once space is freed the next run stages and
  completes.
* The run directory filling up while the program writes its outputs fails the run; the
  half-written file is not recorded, the logs are.
* Collection itself writes nothing to the processing filesystem (it reads the run's files
  and writes the ops-db), so its fault is simulated at the file layer: a file that cannot be
  read while it is hashed (``monkeypatch``, ``EIO``) fails the run with the reason instead of
  leaving it in COLLECTING_RESULTS.
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccat_assets.execution.execute import RunFailed, execute_partition
from ccat_assets.opsdb import RunStatus
from ccat_assets.results import collect
from ccat_assets.settings import get_settings
from tests.conftest import require_service
from tests.reliability.conftest import (
    KEY,
    PIPELINE,
    STEP,
    assert_no_live_in_flight_rows,
    local_services,
    product_paths,
    product_types,
    runs,
    staged_copies,
)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "small-fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs",
                           str(mount)], capture_output=True, text=True, check=False)
    require_service(done.returncode == 0,
                    f"a tmpfs mount (root with CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` to the last byte; the filler file is returned."""
    filler = directory / "filler.bin"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def _execute():
    return execute_partition(local_services(), pipeline_name=PIPELINE, step_name=STEP,
                             sub_group_key=KEY, dagster_run_id="d-1")


def test_staging_into_a_full_location_fails_and_records_nothing(make_pipeline,
                                                                small_fs: Path) -> None:
    processing = small_fs / "processing"
    make_pipeline({}, processing_dir=processing)
    processing.mkdir(exist_ok=True)
    filler = _fill(processing)
    with pytest.raises(RunFailed) as caught:
        _execute()
    assert "staging failed" in caught.value.reason
    assert "No space left on device" in caught.value.reason
    [run] = runs()
    assert run.status == RunStatus.FAILED and "No space left" in run.error_message
    assert run.hpc_job_id is None  # never submitted
    assert staged_copies() == []
    staged = processing / "staged"
    left = [p for p in staged.rglob("*") if p.is_file()] if staged.exists() else []
    assert left == []  # no half-copied file that could be taken for valid
    assert product_paths(run.id) == []

    filler.unlink()  # space again: the next attempt stages, runs and completes
    outcome = _execute()
    assert outcome.status == RunStatus.COMPLETED
    copies = staged_copies()
    assert len(copies) == 2 and all(Path(c.path).is_relative_to(staged) for c in copies)
    assert [r.status for r in runs()] == [RunStatus.FAILED, RunStatus.COMPLETED]
    assert_no_live_in_flight_rows()


def test_outputs_filling_the_run_directory_fail_the_run(make_pipeline, small_fs: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCAT_WORKFLOW_MANAGER_PIPELINE_BASE_DIR", str(small_fs / "pipelines"))
    get_settings.cache_clear()
    make_pipeline({"fill_bytes": 8 << 20})  # 8 MiB into a 1 MiB filesystem
    with pytest.raises(RunFailed) as caught:
        _execute()
    assert "exit code 1" in caught.value.reason
    [run] = runs()
    assert run.status == RunStatus.FAILED and Path(run.run_dir).is_relative_to(small_fs)
    assert (Path(run.run_dir) / "output/science/big.bin").exists()  # half-written, on disk
    assert set(product_types(run.id)) == {"LOG"}  # ... but not a product
    assert "logs/program.log" in product_paths(run.id)
    assert_no_live_in_flight_rows()


def test_unreadable_file_during_collection_fails_the_run(make_pipeline,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated with monkeypatch: hashing one output raises ``EIO``."""
    make_pipeline({"n_files": 2})
    real = collect.file_checksum

    def failing_checksum(path: Path) -> str:
        if path.name == "part-00001.txt":
            raise OSError(errno.EIO, "Input/output error", str(path))
        return real(path)

    monkeypatch.setattr(collect, "file_checksum", failing_checksum)
    with pytest.raises(RunFailed) as caught:
        _execute()
    assert "collection failed" in caught.value.reason and "Input/output" in caught.value.reason
    [run] = runs()
    assert run.status == RunStatus.FAILED and run.exit_code == 0
    assert "part-00001.txt" in run.error_message
    assert "SCIENCE" not in product_types(run.id)
    assert_no_live_in_flight_rows()
