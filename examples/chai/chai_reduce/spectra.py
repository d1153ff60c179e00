"""One FITS layout for every intermediate spectrum product (calibrated and baselined).

A package's spectra share one velocity axis, so they are stored as a 2-D image
(position x channel) with a 1-D spectral WCS, next to a POSITIONS table holding
the sky offsets. Sharing the reader/writer keeps the steps interchangeable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

C_KMS = 299_792.458


def velocity_axis(header: fits.Header, n_channels: int) -> np.ndarray:
    """Radio velocity (km/s) of each channel from the 1-D spectral WCS keywords."""
    pixels = np.arange(n_channels) + 1.0
    return header["CRVAL1"] + (pixels - header["CRPIX1"]) * header["CDELT1"]


def spectral_wcs(v_first_kms: float, dv_kms: float, rest_freq_hz: float) -> dict:
    """Keywords describing channel 1 at ``v_first_kms`` with ``dv_kms`` per channel."""
    return {
        "CTYPE1": "VRAD",
        "CUNIT1": "km/s",
        "CRPIX1": 1.0,
        "CRVAL1": v_first_kms,
        "CDELT1": dv_kms,
        "RESTFRQ": rest_freq_hz,
        "SPECSYS": "LSRK",
    }


@dataclass
class SpectraSet:
    """Spectra of one package (K, Ta* scale) with their positions and metadata."""

    header: fits.Header
    data: np.ndarray
    positions: dict[str, np.ndarray]
    tsys: np.ndarray | None = None
    spectral: dict = field(default_factory=dict)

    @property
    def velocity(self) -> np.ndarray:
        return velocity_axis(fits.Header(self.spectral), self.data.shape[1])


def write_spectra(path: Path, spectra: SpectraSet, product_kind: str) -> None:
    primary = fits.PrimaryHDU(header=spectra.header.copy())
    primary.header["CHAIPROD"] = (product_kind, "CHAI intermediate product kind")
    image = fits.ImageHDU(spectra.data.astype(np.float32), name="SPECTRA")
    image.header.update(spectra.spectral)
    image.header["BUNIT"] = "K"
    columns = [fits.Column(name=k, format="D", array=v) for k, v in spectra.positions.items()]
    hdus = [primary, image, fits.BinTableHDU.from_columns(columns, name="POSITIONS")]
    if spectra.tsys is not None:
        tsys = fits.ImageHDU(spectra.tsys.astype(np.float32), name="TSYS")
        tsys.header.update(spectra.spectral)
        tsys.header["BUNIT"] = "K"
        hdus.append(tsys)
    fits.HDUList(hdus).writeto(path, overwrite=True)


def read_spectra(path: Path) -> SpectraSet:
    with fits.open(path) as hdul:
        image = hdul["SPECTRA"]
        spectral = {k: image.header[k] for k in spectral_wcs(0, 0, 0) if k in image.header}
        table = hdul["POSITIONS"].data
        return SpectraSet(
            header=hdul[0].header.copy(),
            data=np.asarray(image.data, dtype=float),
            positions={name: np.asarray(table[name], dtype=float) for name in table.names},
            tsys=np.asarray(hdul["TSYS"].data, float) if "TSYS" in hdul else None,
            spectral=spectral,
        )
