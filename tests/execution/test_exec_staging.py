"""Staging on both databases: local (links/copies) and SFTP to the loopback sshd.

Each stager must verify checksums, skip files already staged and valid, record STAGED
PhysicalCopies, and on a failure (wrong checksum, missing source, corruption in transit)
leave no file and no record that could be taken for valid.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import sqlalchemy as sa

from ccat_assets.opsdb import DataLocation, PhysicalCopy, PhysicalCopyStatus, RawDataPackage
from ccat_assets.opsdb.session import session_scope
from resources.backends.ssh import SSHConnection, SSHTarget
from resources.staging import LocalStager, SFTPStager, StagingError, make_stager
from tests.execution.conftest import apply_and_ingest
from tests.factories import pipeline_spec

SCANS = [("scan-001", "NGC253", "CO43")]


@pytest.fixture
def archive(ccat_env: Path, tmp_path: Path) -> Path:
    apply_and_ingest(tmp_path, pipeline_spec(tmp_path / "processing"), SCANS)
    return tmp_path / "archive"


def _sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _staged_rows(session) -> list[PhysicalCopy]:
    return list(session.scalars(sa.select(PhysicalCopy).where(
        PhysicalCopy.status == PhysicalCopyStatus.STAGED, PhysicalCopy.raw_data_file_id.is_not(
            None))))


def _processing(session) -> DataLocation:
    return session.scalar(sa.select(DataLocation).filter_by(name="test-processing"))


def _packages(session) -> list[RawDataPackage]:
    return list(session.scalars(sa.select(RawDataPackage)))


def _no_partials(root: Path) -> bool:
    return not any(".partial" in p.name for p in root.rglob("*"))


# -- local ----------------------------------------------------------------------------------

def test_local_staging_verifies_records_and_does_not_stage_twice(archive: Path,
                                                                 tmp_path: Path) -> None:
    with session_scope() as s:
        stager = make_stager(s, _processing(s))
        assert isinstance(stager, LocalStager)
        staged = stager.stage_packages(_packages(s), tmp_path / "run1" / "input" / "raw")
        assert stager.transfers == 2 and len(staged) == 2
        for item in staged:
            assert item.run_path.is_file() and _sha(item.run_path) == item.checksum
        rows = _staged_rows(s)
        assert len(rows) == 2 and all(Path(r.path).is_file() for r in rows)
    with session_scope() as s:
        stager = make_stager(s, _processing(s))
        stager.stage_packages(_packages(s), tmp_path / "run2" / "input" / "raw")
        assert stager.transfers == 0  # already staged and valid: linked, not copied again
        assert (tmp_path / "run2/input/raw/scan-001-chai/spec_0.dat").is_file()


def test_local_checksum_mismatch_stages_nothing(archive: Path, tmp_path: Path) -> None:
    (archive / "2026-11-01/scan-001/spec_1.dat").write_bytes(b"corrupted after ingest\n")
    with session_scope() as s, pytest.raises(StagingError, match="checksum .* does not match"):
        make_stager(s, _processing(s)).stage_packages(_packages(s), tmp_path / "run" / "in")
    processing = tmp_path / "processing"
    assert not (processing / "staged/scan-001-chai/spec_1.dat").exists()
    assert _no_partials(processing)
    with session_scope() as s:
        assert all(not r.path.endswith("spec_1.dat") for r in _staged_rows(s))


def test_local_missing_source_is_a_clear_error(archive: Path, tmp_path: Path) -> None:
    (archive / "2026-11-01/scan-001/spec_0.dat").unlink()
    with session_scope() as s, pytest.raises(StagingError, match="not present at any archive"):
        make_stager(s, _processing(s)).stage_packages(_packages(s), tmp_path / "run" / "in")
    with session_scope() as s:
        assert _staged_rows(s) == []


# -- SFTP to the loopback sshd ----------------------------------------------------------------

@pytest.fixture
def remote(archive: Path, tmp_path: Path, slurm_target: SSHTarget):
    """The processing location turned remote: a host, and a base path only it writes to."""
    base = tmp_path / "remote-processing"
    with session_scope() as s:
        location = _processing(s)
        location.host = f"{slurm_target.user}@{slurm_target.host}:{slurm_target.port}"
        location.base_path = str(base)
    connection = SSHConnection(slurm_target)
    yield base, connection
    connection.close()


def test_sftp_staging_uploads_verifies_and_skips_valid_copies(remote, tmp_path: Path) -> None:
    base, ssh = remote
    with session_scope() as s:
        stager = SFTPStager(s, _processing(s), ssh=ssh)
        staged = stager.stage_packages(_packages(s), tmp_path / "run1" / "input" / "raw")
        assert stager.transfers == 2
        rows = _staged_rows(s)
        assert sorted(Path(r.path).relative_to(base).as_posix() for r in rows) == [
            "staged/scan-001-chai/spec_0.dat", "staged/scan-001-chai/spec_1.dat"]
        for item in staged:
            assert _sha(item.run_path) == item.checksum  # landed, linked into the run
        inode = (base / "staged/scan-001-chai/spec_0.dat").stat().st_ino
    with session_scope() as s:
        stager = SFTPStager(s, _processing(s), ssh=ssh)
        stager.stage_packages(_packages(s), tmp_path / "run2" / "input" / "raw")
        assert stager.transfers == 0
        assert (base / "staged/scan-001-chai/spec_0.dat").stat().st_ino == inode
        assert (tmp_path / "run2/input/raw/scan-001-chai/spec_1.dat").is_file()
    assert _no_partials(base) and _no_partials(tmp_path / "run2")


def test_sftp_checksum_mismatch_at_the_source_uploads_nothing(remote, archive: Path,
                                                              tmp_path: Path) -> None:
    base, ssh = remote
    (archive / "2026-11-01/scan-001/spec_0.dat").write_bytes(b"tampered\n")
    with session_scope() as s, pytest.raises(StagingError, match="at the source"):
        SFTPStager(s, _processing(s), ssh=ssh).stage_packages(_packages(s), tmp_path / "r")
    assert not (base / "staged/scan-001-chai/spec_0.dat").exists()
    assert _no_partials(base)
    with session_scope() as s:
        assert _staged_rows(s) == []


def test_sftp_corruption_in_transit_is_caught_on_the_remote_side(
    remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What landed is checksummed on the remote host, not trusted from the sender."""
    base, ssh = remote

    def corrupting_upload(self, source: Path, remote_path: str) -> str:
        with self.ssh.sftp().open(remote_path, "wb") as handle:
            handle.write(source.read_bytes()[:-1] + b"X")
        return _sha(source)  # the sender read the right bytes

    monkeypatch.setattr(SFTPStager, "_upload", corrupting_upload)
    with session_scope() as s, pytest.raises(StagingError, match="after transfer"):
        SFTPStager(s, _processing(s), ssh=ssh).stage_packages(_packages(s), tmp_path / "r")
    assert not (base / "staged/scan-001-chai/spec_0.dat").exists()
    assert _no_partials(base)


def test_sftp_missing_source(remote, archive: Path, tmp_path: Path) -> None:
    _base, ssh = remote
    (archive / "2026-11-01/scan-001/spec_1.dat").unlink()
    with session_scope() as s, pytest.raises(StagingError, match="not present at any archive"):
        SFTPStager(s, _processing(s), ssh=ssh).stage_packages(_packages(s), tmp_path / "r")
