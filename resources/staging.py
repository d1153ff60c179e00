"""Bring a run's inputs to its processing location, verified.

Raw files are staged once per processing location (``<base>/staged/<package>/<file>``,
recorded as STAGED PhysicalCopies, checksum-verified, written to a temporary name and renamed
only when valid), then linked into each run's read-only input directory. A file already
staged with the recorded checksum and size is not copied again. A failure (missing source,
checksum mismatch, broken connection) removes the temporary file and records nothing, so
nothing half-copied is ever taken for valid.

Two stagers share that logic: :class:`LocalStager` when the archive copy and the processing
location share this machine's filesystems (hard links where possible, else copies), and
:class:`SFTPStager` when the processing location is another host (``DataLocation.host``):
files go over SFTP and are verified by a ``sha256sum`` run on that host, so what is checked
is what landed there. :func:`make_stager` picks one per location.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ccat_assets.execution.staging_types import PackageDone, StagedInput, Stager
from ccat_assets.hashing import CHUNK_BYTES, file_checksum
from ccat_assets.opsdb import (
    DataLocation,
    LocationType,
    PhysicalCopy,
    PhysicalCopyStatus,
    RawDataFile,
    RawDataPackage,
)
from ccat_assets.opsdb.types import utcnow
from ccat_assets.paths import join_inside, link_or_copy, safe_relative_path
from resources.backends.ssh_target import SSHError, SSHTarget

if TYPE_CHECKING:
    from resources.backends.ssh import SSHConnection


class StagingError(RuntimeError):
    """Inputs could not be brought to the processing location; nothing partial is kept."""


def archive_copies(session: Session, package: RawDataPackage
                   ) -> list[tuple[PhysicalCopy, DataLocation]]:
    """The package's PRESENT copies at non-processing locations, best first."""
    return archive_copies_of(session, [package])[package.id]


def archive_copies_of(session: Session, packages: list[RawDataPackage]
                      ) -> dict[int, list[tuple[PhysicalCopy, DataLocation]]]:
    """:func:`archive_copies` of each of ``packages``, in one query, by package id."""
    found: dict[int, list[tuple[PhysicalCopy, DataLocation]]] = {p.id: [] for p in packages}
    if not found:
        return found
    for copy, location in session.execute(
            sa.select(PhysicalCopy, DataLocation)
            .join(DataLocation, PhysicalCopy.data_location_id == DataLocation.id)
            .where(PhysicalCopy.raw_data_package_id.in_(list(found)),
                   PhysicalCopy.status == PhysicalCopyStatus.PRESENT,
                   DataLocation.location_type != LocationType.PROCESSING)
            .order_by(DataLocation.priority.desc(), DataLocation.id)):
        found[copy.raw_data_package_id].append((copy, location))
    return found


def archive_source(session: Session, package: RawDataPackage, rel: str,
                   copies: list[tuple[PhysicalCopy, DataLocation]] | None = None) -> Path:
    """The best readable copy of one raw file at a non-processing location (``copies``:
    the package's :func:`archive_copies`, if already read)."""
    if copies is None:
        copies = archive_copies(session, package)
    for copy, location in copies:
        candidate = join_inside(Path(location.base_path), copy.path) / rel
        if candidate.is_file():
            return candidate
    raise StagingError(
        f"raw package {package.name!r}: file {rel!r} is not present at any archive location"
    )


def _staged_copies(session: Session, raw_files: list[RawDataFile], location: DataLocation
                   ) -> dict[int, PhysicalCopy]:
    """The STAGED copy at ``location`` of each of ``raw_files`` that has one, in one query,
    by raw file id."""
    found: dict[int, PhysicalCopy] = {}
    if not raw_files:
        return found
    for copy in session.scalars(sa.select(PhysicalCopy).where(
            PhysicalCopy.raw_data_file_id.in_([f.id for f in raw_files]),
            PhysicalCopy.data_location_id == location.id)):
        found.setdefault(copy.raw_data_file_id, copy)  # the first, should there be two
    return found


_UNREAD: Any = object()


class _StagedCopies:
    """What a stager reads of the copies of the raw files it handles: their STAGED copies at
    its location, and each package's archive copies to stage from. Read in one query each for
    every package it is told of at once (:meth:`prefetch`: a batch's, before its members are
    staged), else per package as it is staged; the staged copies kept current as files are
    staged."""

    def __init__(self, session: Session, location: DataLocation):
        self.session, self.location = session, location
        self._by_file: dict[int, PhysicalCopy | None] = {}
        self._archive: dict[int, list[tuple[PhysicalCopy, DataLocation]]] = {}

    def prefetch(self, packages: list[RawDataPackage]) -> None:
        files = [f for p in packages for f in p.files if f.id not in self._by_file]
        found = _staged_copies(self.session, files, self.location)
        self._by_file.update({f.id: found.get(f.id) for f in files})
        self._archive.update(archive_copies_of(
            self.session, [p for p in packages if p.id not in self._archive]))

    def archive(self, package: RawDataPackage) -> list[tuple[PhysicalCopy, DataLocation]]:
        """The package's archive copies, best first (:func:`archive_copies`)."""
        if package.id not in self._archive:
            self._archive[package.id] = archive_copies(self.session, package)
        return self._archive[package.id]

    def of(self, package: RawDataPackage, raw_file: RawDataFile) -> PhysicalCopy | None:
        copy = self._by_file.get(raw_file.id, _UNREAD)
        if copy is _UNREAD or (copy is not None and copy not in self.session):
            # not read yet, or recorded by a member whose savepoint was undone since
            for other in package.files:
                self._by_file.pop(other.id, None)
            self.prefetch([package])
        return self._by_file[raw_file.id]

    def record(self, copy: PhysicalCopy | None, raw_file: RawDataFile, path: str) -> None:
        """:func:`_record`, remembered: staging the file again finds this copy."""
        self._by_file[raw_file.id] = _record(self.session, copy, raw_file, self.location, path)


def _is_valid(copy: PhysicalCopy | None, raw_file: RawDataFile, size: int | None) -> bool:
    return (copy is not None and copy.status == PhysicalCopyStatus.STAGED
            and copy.checksum == raw_file.checksum and size == raw_file.size_bytes)


def _record(session: Session, copy: PhysicalCopy | None, raw_file: RawDataFile,
            location: DataLocation, path: str) -> PhysicalCopy:
    """Record (or refresh) the STAGED PhysicalCopy: only ever after verification."""
    if copy is None:
        copy = PhysicalCopy(raw_data_file_id=raw_file.id, data_location_id=location.id,
                            path=path)
        session.add(copy)
    copy.status, copy.checksum, copy.path = PhysicalCopyStatus.STAGED, raw_file.checksum, path
    copy.verified_at = utcnow()
    return copy


def _mismatch(package: RawDataPackage, raw_file: RawDataFile, actual: str, where: str) -> str:
    return (f"raw file {package.name}/{raw_file.relative_path}: checksum {actual} {where} "
            f"does not match the recorded {raw_file.checksum}")


class LocalStager:
    """Staging where the archive copy and the processing location share this machine."""

    def __init__(self, session: Session, processing_location: DataLocation):
        self.session = session
        self.location = processing_location
        self.staged_root = Path(processing_location.base_path) / "staged"
        self.transfers = 0  # files actually copied or linked (tests check "not again")
        self.staged_copies = _StagedCopies(session, processing_location)

    def prefetch(self, packages: list[RawDataPackage]) -> None:
        """Read the staged and archive copies of every file of ``packages`` at once."""
        self.staged_copies.prefetch(packages)

    def stage_file(self, package: RawDataPackage, raw_file: RawDataFile) -> Path:
        """The verified staged copy of ``raw_file``, staging it only when needed."""
        staged = join_inside(self.staged_root, f"{package.name}/{raw_file.relative_path}")
        copy = self.staged_copies.of(package, raw_file)
        size = staged.stat().st_size if staged.is_file() else None
        if _is_valid(copy, raw_file, size):
            return staged
        source = archive_source(self.session, package, raw_file.relative_path,
                                self.staged_copies.archive(package))
        staged.parent.mkdir(parents=True, exist_ok=True)
        partial = staged.with_name(f".{staged.name}.partial")
        try:
            partial.unlink(missing_ok=True)
            try:
                os.link(source, partial)
            except OSError:
                shutil.copyfile(source, partial)
            actual = file_checksum(partial)
            if actual != raw_file.checksum:
                raise StagingError(_mismatch(package, raw_file, actual, "at the source"))
            os.replace(partial, staged)
            self.transfers += 1
        except OSError as exc:
            raise StagingError(
                f"staging {package.name}/{raw_file.relative_path} failed: {exc.strerror or exc}"
            ) from exc
        finally:
            partial.unlink(missing_ok=True)
        self.staged_copies.record(copy, raw_file, str(staged))
        return staged

    def stage_packages(
        self, packages: list[RawDataPackage], run_input_dir: Path, *,
        progress: PackageDone | None = None,
    ) -> list[StagedInput]:
        """Stage every file of ``packages`` and link it into ``run_input_dir/<package>/``;
        ``progress`` hears of each package when it is done."""
        out = []
        for package in packages:
            for raw_file in package.files:
                staged = self.stage_file(package, raw_file)
                target = join_inside(run_input_dir, f"{package.name}/{raw_file.relative_path}")
                link_or_copy(staged, target)
                out.append(StagedInput(
                    package_id=package.id, relative_path=raw_file.relative_path,
                    checksum=raw_file.checksum, size_bytes=raw_file.size_bytes,
                    file_type=raw_file.file_type, run_path=target,
                ))
            if progress is not None:
                progress(package)
        return out


def _remote_join(root: PurePosixPath, relative: str) -> PurePosixPath:
    """``root / relative`` for a remote path: relative, no ``..``, no control characters."""
    return root / safe_relative_path(relative)


class SFTPStager:
    """Staging to a processing location on another host, over SFTP on a verified connection.

    The run directories (``PIPELINE_BASE_DIR``) must be at the same path on that host as
    here (a shared filesystem, as on a cluster); the staged area need not be visible here.
    Remote commands cost a round trip each, so a package's files are verified with one
    ``sha256sum`` and linked with one batched command, whatever their number.
    """

    def __init__(self, session: Session, processing_location: DataLocation,
                 ssh: SSHConnection | None = None):
        if not processing_location.host:
            raise ValueError(f"location {processing_location.name!r} has no host to stage to")
        self.session = session
        self.location = processing_location
        self.ssh = ssh or location_connection(processing_location)
        self.staged_root = PurePosixPath(processing_location.base_path) / "staged"
        self.transfers = 0
        self.staged_copies = _StagedCopies(session, processing_location)

    def prefetch(self, packages: list[RawDataPackage]) -> None:
        """Read the staged and archive copies of every file of ``packages`` at once."""
        self.staged_copies.prefetch(packages)

    def _remote_size(self, path: str) -> int | None:
        try:
            return self.ssh.sftp().stat(path).st_size
        except FileNotFoundError:
            return None

    def _remote_checksums(self, paths: list[str]) -> dict[str, str]:
        """``sha256sum`` of many remote files in one command."""
        result = self.ssh.run(["sha256sum", "--", *paths])
        sums = {}
        for line in result.stdout.splitlines():
            digest, _, path = line.partition("  ")
            sums[path] = "sha256:" + digest
        if not result.ok or set(sums) != set(paths):
            raise StagingError(f"cannot checksum staged files on {self.location.host}: "
                               f"{result.stderr.strip()[-300:]}")
        return sums

    def _upload(self, source: Path, remote: str) -> str:
        """Stream ``source`` to ``remote``; the sha256 of what was read, for the source check."""
        digest = hashlib.sha256()
        with open(source, "rb") as local, self.ssh.sftp().open(remote, "wb") as handle:
            handle.set_pipelined(True)
            while chunk := local.read(CHUNK_BYTES):
                digest.update(chunk)
                handle.write(chunk)
        return "sha256:" + digest.hexdigest()

    def _remove_quietly(self, path: str) -> None:
        with contextlib.suppress(OSError, SSHError):
            self.ssh.sftp().remove(path)

    def stage_package(self, package: RawDataPackage) -> dict[str, str]:
        """relative path -> verified remote staged path, for every file of ``package``;
        only files not already staged and valid are uploaded."""
        out: dict[str, str] = {}
        todo: list[tuple[RawDataFile, PhysicalCopy | None, PurePosixPath, str]] = []
        for raw_file in package.files:
            staged = _remote_join(self.staged_root, f"{package.name}/{raw_file.relative_path}")
            copy = self.staged_copies.of(package, raw_file)
            if _is_valid(copy, raw_file, self._remote_size(str(staged))):
                out[raw_file.relative_path] = str(staged)
            else:
                todo.append((raw_file, copy, staged,
                             str(staged.with_name(f".{staged.name}.partial"))))
        if not todo:
            return out
        try:
            for raw_file, _copy, staged, partial in todo:
                source = archive_source(self.session, package, raw_file.relative_path,
                                        self.staged_copies.archive(package))
                self.ssh.makedirs(str(staged.parent))
                read = self._upload(source, partial)
                if read != raw_file.checksum:
                    raise StagingError(_mismatch(package, raw_file, read, "at the source"))
            landed = self._remote_checksums([partial for *_, partial in todo])
            for raw_file, _copy, _staged, partial in todo:
                if landed[partial] != raw_file.checksum:
                    raise StagingError(_mismatch(package, raw_file, landed[partial],
                                                 f"on {self.location.host} after transfer"))
            for raw_file, copy, staged, partial in todo:
                self.ssh.sftp().posix_rename(partial, str(staged))
                self.transfers += 1
                self.staged_copies.record(copy, raw_file, str(staged))
                out[raw_file.relative_path] = str(staged)
        except (OSError, SSHError) as exc:
            raise StagingError(f"staging {package.name} to {self.location.host} failed: "
                               f"{exc}") from exc
        finally:
            for *_, partial in todo:
                self._remove_quietly(partial)
        return out

    def _link_all(self, pairs: list[tuple[str, str]]) -> None:
        """Hard-link (same filesystem) else copy each staged file to its run path on the
        remote host, atomically via a temporary name; one round trip for all of them."""
        temporaries = []
        for _staged, target in pairs:
            path = PurePosixPath(target)
            self.ssh.makedirs(str(path.parent))
            temporaries.append(str(path.with_name(f".{path.name}.partial")))
        for tmp in temporaries:
            self._remove_quietly(tmp)
        try:
            results = self.ssh.run_batch([["ln", "--", staged, tmp] for (staged, _), tmp
                                          in zip(pairs, temporaries, strict=True)])
            for (staged, target), tmp, linked in zip(pairs, temporaries, results, strict=True):
                if not linked.ok:
                    copied = self.ssh.run(["cp", "--", staged, tmp])
                    if not copied.ok:
                        raise StagingError(f"cannot link or copy {staged} to {target} on "
                                           f"{self.location.host}: {copied.stderr[-300:]}")
                self.ssh.sftp().posix_rename(tmp, target)
        except (OSError, SSHError) as exc:
            raise StagingError(f"linking inputs on {self.location.host} failed: {exc}") from exc
        finally:
            for tmp in temporaries:
                self._remove_quietly(tmp)

    def stage_packages(
        self, packages: list[RawDataPackage], run_input_dir: Path, *,
        progress: PackageDone | None = None,
    ) -> list[StagedInput]:
        """Stage every file of ``packages`` and link it into ``run_input_dir/<package>/``
        on the processing host; ``progress`` hears of each package once it is uploaded and
        verified there."""
        out, pairs = [], []
        root = PurePosixPath(run_input_dir.as_posix())
        for package in packages:
            staged = self.stage_package(package)
            if progress is not None:
                progress(package)
            for raw_file in package.files:
                target = _remote_join(root, f"{package.name}/{raw_file.relative_path}")
                pairs.append((staged[raw_file.relative_path], str(target)))
                out.append(StagedInput(
                    package_id=package.id, relative_path=raw_file.relative_path,
                    checksum=raw_file.checksum, size_bytes=raw_file.size_bytes,
                    file_type=raw_file.file_type, run_path=Path(str(target)),
                ))
        if pairs:
            self._link_all(pairs)
        return out


def location_target(location: DataLocation, settings: Any | None = None) -> SSHTarget:
    """The SSH target of a remote location: ``[user@]host[:port]`` from ``DataLocation.host``,
    credentials from the STAGING_SSH_* settings, falling back to the SLURM_* ones."""
    if settings is None:
        from ccat_assets.settings import get_settings

        settings = get_settings()

    def pick(name: str) -> Any:
        return getattr(settings, f"staging_ssh_{name}", None) or getattr(
            settings, f"slurm_{name}", None)

    return SSHTarget.parse(
        location.host or "", default_user=pick("user") or "ccat",
        key_path=pick("key_path"), known_hosts=pick("known_hosts"),
    )


def location_connection(location: DataLocation) -> SSHConnection:
    from resources.backends.ssh import shared_connection  # paramiko only where it connects

    return shared_connection(location_target(location))


def make_stager(session: Session, processing_location: DataLocation) -> Stager:
    """The stager for a location: SFTP when it names a host, local otherwise."""
    if processing_location.host:
        return SFTPStager(session, processing_location)
    return LocalStager(session, processing_location)
