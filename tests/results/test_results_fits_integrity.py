"""The integrity check verifies a FITS product's own CHECKSUM/DATASUM cards besides its
sha256: a data byte changed after collection fails both, with a message naming the HDU; a
file damaged before collection (its sha256 recorded as damaged) still fails on the FITS
sums. On both databases."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from ccat_assets.results.collect import collect_run
from ccat_assets.results.fits_integrity import fits_checksum_problems
from ccat_assets.results.provenance.verify import verify_files
from tests.conftest import require_service
from tests.results.kit import make_run, map_key, write

try:  # the `fits` extra, installed by `make venv`
    from astropy.io import fits
except ImportError:  # pragma: no cover - only where the extra is missing
    fits = None


@pytest.fixture(autouse=True)
def _astropy() -> None:
    """Without astropy these tests cannot write FITS: a skip on a laptop, a failure in CI."""
    require_service(fits is not None, "astropy (the `fits` extra: pip install -e '.[fits]')")


def _write_cube(path: Path, *, checksum: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cube = fits.ImageHDU(np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6), name="CUBE")
    fits.HDUList([fits.PrimaryHDU(), cube]).writeto(path, checksum=checksum)
    return path


def _flip_a_data_byte(path: Path) -> None:
    """Change one byte inside the CUBE HDU's data: same size, header untouched."""
    with fits.open(path) as hdul:
        offset = hdul["CUBE"].fileinfo()["datLoc"] + 17
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x40
    path.write_bytes(bytes(raw))


def _collected(session, applied, location_id, damage_before: bool = False):
    run, layout = make_run(session, "grid", map_key("NGC253", "CO43"), applied)
    cube = _write_cube(layout.output_dir / "science" / "cube.fits")
    _write_cube(layout.output_dir / "science" / "plain.fits", checksum=False)
    write(layout.output_dir / "statistics" / "stats.json", "{}")
    if damage_before:
        _flip_a_data_byte(cube)
    collect_run(session, run, layout, is_final=True, processing_location_id=location_id)
    return run, cube


def test_intact_fits_products_pass(session, applied, location_id) -> None:
    run, _cube = _collected(session, applied, location_id)
    report = verify_files(session, run.id)
    assert report.passed and report.fits_invalid == [] and report.fits_unverified == 0
    assert report.verified == 3  # the cube, the FITS without sums, the JSON


def test_a_changed_data_byte_fails_the_sha256_and_the_fits_datasum(
        session, applied, location_id) -> None:
    run, cube = _collected(session, applied, location_id)
    _flip_a_data_byte(cube)

    report = verify_files(session, run.id)

    assert not report.passed
    assert [m.split(" (")[0] for m in report.mismatched] == ["output/science/cube.fits"]
    assert "output/science/cube.fits: Datasum verification failed for HDU ('CUBE', 1): the " \
           "data do not match their DATASUM card" in report.fits_invalid
    assert report.verified == 2


def test_a_file_damaged_before_collection_fails_on_its_fits_sums(
        session, applied, location_id) -> None:
    """The recorded sha256 is that of the damaged file, so only the FITS sums can tell."""
    run, _cube = _collected(session, applied, location_id, damage_before=True)

    report = verify_files(session, run.id)

    assert report.mismatched == [] and report.missing == []
    assert not report.passed
    assert any(m.startswith("output/science/cube.fits: Datasum verification failed for HDU "
                            "('CUBE', 1)") for m in report.fits_invalid), report.fits_invalid


def test_a_fits_named_file_that_is_no_fits_fails(tmp_path: Path) -> None:
    problems = fits_checksum_problems(write(tmp_path / "x.fits", "not fits"))
    assert len(problems) == 1 and problems[0].startswith("not a readable FITS file")


def test_without_astropy_fits_sums_are_reported_unverified_not_passed_silently(
        session, applied, location_id, monkeypatch: pytest.MonkeyPatch) -> None:
    run, _cube = _collected(session, applied, location_id, damage_before=True)
    monkeypatch.setitem(sys.modules, "astropy.io", None)  # as if astropy were not installed

    report = verify_files(session, run.id)

    assert report.fits_unverified == 2 and report.fits_invalid == []
    assert report.passed  # the sha256 alone is judged, and it matches
