"""FITS checksums (the CHECKSUM and DATASUM cards of each HDU), as part of product integrity.

The sha256 recorded at collection proves a file has not changed since it was collected. The
FITS checksums, written by the program itself (``hdul.writeto(..., checksum=True)``), prove
more: that the header and data are what the program wrote, so a file damaged before it was
collected (a half-flushed write, a bit flip on the node's disk) is caught as well, and the
message says which HDU and whether its header or its data are wrong.

astropy does the verification: ``fits.open(path, checksum=True)`` only *warns* when a sum does
not match, so the warnings are collected and returned as problems. astropy is an optional
dependency of the orchestrator (the ``fits`` extra): without it FITS checksums are reported
as not verified, never as verified, and the sha256 check works as before.
"""

from __future__ import annotations

import warnings
from pathlib import Path

#: File names verified as FITS (astropy opens the gzip-compressed one transparently).
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz")


class FitsVerificationUnavailable(RuntimeError):
    """astropy is not installed: FITS checksums cannot be verified here."""


def is_fits(path: Path | str) -> bool:
    return str(path).lower().endswith(FITS_SUFFIXES)


def fits_checksum_problems(path: Path) -> list[str]:
    """Why the CHECKSUM/DATASUM cards of ``path`` do not verify; ``[]`` when every HDU that
    carries them matches (an HDU without them has nothing to verify).

    Raises :class:`FitsVerificationUnavailable` without astropy.
    """
    try:
        from astropy.io import fits
        from astropy.utils.exceptions import AstropyUserWarning
    except ImportError as exc:
        raise FitsVerificationUnavailable(
            "astropy is not installed (install ccat-workflow-manager[fits])") from exc
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # lazy_load_hdus=False reads every HDU now, and checksum=True verifies each as
            # it is read (its data too, for DATASUM).
            with fits.open(path, checksum=True, memmap=False, lazy_load_hdus=False):
                pass
        except (OSError, ValueError, EOFError) as exc:
            return [f"not a readable FITS file ({exc})"]
    return [_explain(str(w.message)) for w in caught
            if issubclass(w.category, AstropyUserWarning)
            and "verification failed" in str(w.message)]


def _explain(message: str) -> str:
    """astropy's warning, with what it means for the file."""
    text = message.strip().rstrip(".")
    if text.startswith("Datasum"):
        return f"{text}: the data do not match their DATASUM card"
    if text.startswith("Checksum"):
        return f"{text}: the HDU (header or data) does not match its CHECKSUM card"
    return text
