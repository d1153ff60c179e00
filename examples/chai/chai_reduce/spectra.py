"""One FITS layout for every intermediate spectrum product (calibrated and baselined).

A package's spectra share one velocity axis, so they are stored as a 2-D image
(position x channel) with a 1-D spectral WCS, next to a POSITIONS table holding
the sky offsets. Sharing the reader/writer keeps the steps interchangeable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import astropy.constants as const
import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

C_KMS = const.c.to_value(u.km / u.s)
#: The keywords of a 1-D spectral axis; read alone, so that the data's NAXIS (a spectra image
#: or a header without data) does not matter.
SPECTRAL_KEYS = ("CTYPE1", "CUNIT1", "CRPIX1", "CRVAL1", "CDELT1", "RESTFRQ", "SPECSYS")
#: The unit the programs compute in. Files may say anything convertible (WCS writes m/s).
VELOCITY = u.km / u.s


def spectral_wcs(v_first: u.Quantity, dv: u.Quantity, rest_freq: u.Quantity) -> WCS:
    """1-D radio-velocity WCS: channel 1 at ``v_first``, ``dv`` per channel, LSRK.

    Built as a WCS object and written with ``to_header()``, so CTYPE, CUNIT, RESTFRQ and
    SPECSYS are always consistent (wcslib writes velocities in SI, m/s, with CUNIT1 saying
    so); readers must convert by CUNIT, never assume km/s.
    """
    wcs = WCS(naxis=1)
    wcs.wcs.ctype = ["VRAD"]
    wcs.wcs.cunit = [VELOCITY.to_string("fits")]
    wcs.wcs.crpix = [1.0]
    wcs.wcs.crval = [u.Quantity(v_first, VELOCITY).value]
    wcs.wcs.cdelt = [u.Quantity(dv, VELOCITY).value]
    wcs.wcs.restfrq = u.Quantity(rest_freq, u.Hz).value
    wcs.wcs.specsys = "LSRK"
    return wcs


def velocity_axis(wcs: WCS, n_channels: int) -> u.Quantity:
    """Radio velocity of each channel, in ``VELOCITY``, whatever unit the WCS is in."""
    values = wcs.pixel_to_world_values(np.arange(n_channels, dtype=float))
    return u.Quantity(values, wcs.wcs.cunit[0]).to(VELOCITY)  # cunit is set by the call


def spectral_from_header(header: fits.Header) -> WCS:
    """The spectral axis 1 of ``header`` (any velocity CUNIT1), as a :func:`spectral_wcs`.

    Only the spectral keywords are taken over: a WCS read from a whole header would also
    carry its date and observer keywords into every header it is written to. A missing
    CUNIT1 means the WCS default for VRAD, m/s.
    """
    if header.get("CTYPE1", "").strip() != "VRAD":
        raise ValueError(f"axis 1 is {header.get('CTYPE1')!r}, not a radio velocity (VRAD)")
    wcs = WCS(fits.Header([(k, header[k]) for k in SPECTRAL_KEYS if k in header]), fix=False)
    v = velocity_axis(wcs, 2)
    return spectral_wcs(v[0], v[1] - v[0], wcs.wcs.restfrq * u.Hz)


@dataclass
class SpectraSet:
    """Spectra of one package (K, Ta* scale) with their positions and metadata."""

    header: fits.Header
    data: np.ndarray
    positions: dict[str, np.ndarray]
    tsys: np.ndarray | None = None
    spectral: WCS = field(default_factory=lambda: WCS(naxis=1))

    @property
    def velocity(self) -> np.ndarray:
        """Channel velocities in km/s (``VELOCITY``), as plain numbers for the numerics."""
        return velocity_axis(self.spectral, self.data.shape[1]).to_value(VELOCITY)


def write_spectra(path: Path, spectra: SpectraSet, product_kind: str) -> None:
    primary = fits.PrimaryHDU(header=spectra.header.copy())
    primary.header["CHAIPROD"] = (product_kind, "CHAI intermediate product kind")
    image = fits.ImageHDU(spectra.data.astype(np.float32), name="SPECTRA")
    image.header.update(spectra.spectral.to_header())
    image.header["BUNIT"] = u.K.to_string("fits")
    columns = [fits.Column(name=k, format="D", array=v) for k, v in spectra.positions.items()]
    hdus = [primary, image, fits.BinTableHDU.from_columns(columns, name="POSITIONS")]
    if spectra.tsys is not None:
        tsys = fits.ImageHDU(spectra.tsys.astype(np.float32), name="TSYS")
        tsys.header.update(spectra.spectral.to_header())
        tsys.header["BUNIT"] = u.K.to_string("fits")
        hdus.append(tsys)
    fits.HDUList(hdus).writeto(path, overwrite=True, checksum=True)


def read_spectra(path: Path) -> SpectraSet:
    with fits.open(path) as hdul:
        image = hdul["SPECTRA"]
        spectral = spectral_from_header(image.header)
        table = hdul["POSITIONS"].data
        return SpectraSet(
            header=hdul[0].header.copy(),
            data=np.asarray(image.data, dtype=float),
            positions={name: np.asarray(table[name], dtype=float) for name in table.names},
            tsys=np.asarray(hdul["TSYS"].data, float) if "TSYS" in hdul else None,
            spectral=spectral,
        )
