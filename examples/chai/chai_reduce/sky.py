"""The synthetic sky and instrument: what the generator injects and the tests recover.

The sky (where a source's line emission peaks, how bright and wide it is) depends
only on the source and line names, so repeated nights observe the same sky; noise,
weather and instrument drifts depend on the night's seed.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

import numpy as np

# Rest frequencies (GHz) of lines in or near the CHAI bands.
LINES_GHZ = {
    "CO43": 461.040768,
    "CI10": 492.160651,
    "CO76": 806.651806,
    "CI21": 809.341970,
    "CII": 1900.536900,
}
# Line brightness relative to CO(4-3), typical of star-forming regions.
LINE_SCALE = {"CO43": 1.0, "CI10": 0.35, "CO76": 0.6, "CI21": 0.45, "CII": 1.8}


@dataclass(frozen=True)
class SourceModel:
    """Catalogue position plus the (beam-convolved) line emission as seen on the sky."""

    ra_deg: float
    dec_deg: float
    vsys_kms: float
    fwhm_kms: float
    peak_k: float
    x0_arcsec: float
    y0_arcsec: float
    sky_fwhm_arcsec: float


KNOWN_SOURCES = {
    "NGC253": SourceModel(11.888, -25.288, 243.0, 120.0, 1.5, 6.0, -4.0, 40.0),
    "ORION": SourceModel(83.822, -5.391, 9.0, 5.0, 40.0, -5.0, 7.0, 36.0),
}


def name_seed(*names: str) -> list[int]:
    """Stable integers from names (Python's hash() is salted per process)."""
    return [zlib.crc32(n.encode()) for n in names]


def source_model(name: str) -> SourceModel:
    """Known sources from the table; any other name gets a reproducible invented one."""
    if name in KNOWN_SOURCES:
        return KNOWN_SOURCES[name]
    rng = np.random.default_rng(name_seed(name))
    return SourceModel(
        ra_deg=float(rng.uniform(0, 360)),
        dec_deg=float(rng.uniform(-70, 20)),
        vsys_kms=float(rng.uniform(-50, 300)),
        fwhm_kms=float(rng.uniform(4, 60)),
        peak_k=float(rng.uniform(1, 20)),
        x0_arcsec=float(rng.uniform(-8, 8)),
        y0_arcsec=float(rng.uniform(-8, 8)),
        sky_fwhm_arcsec=float(rng.uniform(30, 50)),
    )


@dataclass(frozen=True)
class LineTruth:
    """Injected line of one (source, line) target, in Ta* (K) and km/s."""

    source: str
    line_id: str
    rest_freq_ghz: float
    peak_k: float
    center_kms: float
    fwhm_kms: float
    x0_arcsec: float
    y0_arcsec: float
    sky_fwhm_arcsec: float

    def amplitude_at(self, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """Line peak (K) at sky offsets: a 2-D Gaussian around (x0, y0)."""
        r2 = (dx - self.x0_arcsec) ** 2 + (dy - self.y0_arcsec) ** 2
        return self.peak_k * np.exp(-4 * np.log(2) * r2 / self.sky_fwhm_arcsec**2)

    def profile(self, velocity: np.ndarray) -> np.ndarray:
        return np.exp(-4 * np.log(2) * ((velocity - self.center_kms) / self.fwhm_kms) ** 2)

    def as_dict(self) -> dict:
        return asdict(self)


def line_truth(source: str, line_id: str) -> LineTruth:
    model = source_model(source)
    return LineTruth(
        source=source,
        line_id=line_id,
        rest_freq_ghz=LINES_GHZ[line_id],
        peak_k=model.peak_k * LINE_SCALE[line_id],
        center_kms=model.vsys_kms,
        fwhm_kms=model.fwhm_kms,
        x0_arcsec=model.x0_arcsec,
        y0_arcsec=model.y0_arcsec,
        sky_fwhm_arcsec=model.sky_fwhm_arcsec,
    )


def receiver(line_id: str) -> tuple[float, float]:
    """Nominal (receiver temperature K, zenith opacity) for the band holding the line."""
    freq = LINES_GHZ[line_id]
    if freq < 600:
        return 150.0, 0.5
    if freq < 1000:
        return 300.0, 1.0
    return 900.0, 1.2
