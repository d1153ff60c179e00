"""chai-gridding: convolution gridding of baselined spectra into a cube and moment-0 map.

Every cube pixel is the weighted mean of nearby spectra, weights being a Gaussian
kernel in sky distance times 1/rms^2 of each spectrum. That is the standard
single-dish (class/gridzilla-style) approach: it fills the gaps between scan rows
and keeps the noise-weighting honest. The final map is then characterised: a 2-D
Gaussian fitted to the moment-0 map gives the peak position, and a Gaussian fitted
to the spectrum gridded at that position gives line centre, peak and width.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from astropy.wcs import WCS

from .contract import ContractError, StepContext, run
from .fitting import FWHM_PER_SIGMA, fit_line, fit_map, robust_sigma
from .spectra import VELOCITY, SpectraSet, read_spectra, velocity_axis

#: Unit of the moment-0 map: brightness temperature integrated over velocity.
MOMENT0_UNIT = u.K * VELOCITY


def load_inputs(paths: list[Path]) -> tuple[list[SpectraSet], np.ndarray]:
    """All baselined sets, checked to be one target on one common velocity axis."""
    sets = [read_spectra(p) for p in paths]
    targets = {(s.header.get("OBJECT"), s.header.get("LINE")) for s in sets}
    if len(targets) != 1:
        raise ContractError(f"inputs mix several source/line targets: {sorted(targets)}")
    velocity = sets[0].velocity
    for s in sets[1:]:
        if s.velocity.shape != velocity.shape or not np.allclose(s.velocity, velocity):
            raise ContractError("inputs do not share one velocity axis")
    return sets, velocity


def nearest_spacing(x: np.ndarray, y: np.ndarray) -> float:
    """Median distance from each distinct sample position to its nearest neighbour."""
    pts = np.unique(np.round(np.column_stack([x, y]), 3), axis=0)
    if len(pts) < 2:
        return 10.0
    d = np.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    return float(np.median(d.min(axis=1)))


def grid_spectra(
    x: np.ndarray, y: np.ndarray, data: np.ndarray, weights: np.ndarray,
    gx: np.ndarray, gy: np.ndarray, fwhm: float, cutoff: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kernel-weighted means at target points (gx, gy).

    Returns (spectra [n_points, n_chan], sum of weights, effective number of spectra).
    Points with no sample within ``cutoff`` get NaN.
    """
    r2 = (gx[:, None] - x[None, :]) ** 2 + (gy[:, None] - y[None, :]) ** 2
    sigma = fwhm / FWHM_PER_SIGMA
    w = np.exp(-0.5 * r2 / sigma**2) * weights[None, :]
    w[r2 > cutoff**2] = 0.0
    wsum = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        spectra = (w @ data) / wsum[:, None]
        n_eff = wsum**2 / (w**2).sum(axis=1)
    spectra[wsum == 0] = np.nan
    return spectra, wsum, np.nan_to_num(n_eff)


def moment_window(params: dict[str, Any], velocity: np.ndarray, mean: np.ndarray,
                  sets: list[SpectraSet]) -> tuple[float, float]:
    """Velocity range to integrate: parameter, else +-1.5 FWHM of the mean line."""
    if params.get("moment_window_kms") not in (None, "auto"):
        lo, hi = sorted(float(v) for v in params["moment_window_kms"])
        return lo, hi
    line = fit_line(velocity, mean)
    if np.isfinite(line["fwhm_kms"]) and velocity.min() < line["center_kms"] < velocity.max():
        half = 1.5 * line["fwhm_kms"]
        return line["center_kms"] - half, line["center_kms"] + half
    windows = [(s.header.get("LINEWLO"), s.header.get("LINEWHI")) for s in sets]
    windows = [w for w in windows if w[0] is not None and np.isfinite(w[0])]
    if not windows:
        raise ContractError("no line found to define the moment window; set moment_window_kms")
    return min(w[0] for w in windows), max(w[1] for w in windows)


def map_wcs(ref: fits.Header, xs: np.ndarray, ys: np.ndarray, pix: float,
            spectral: WCS) -> WCS:
    """Cube WCS: SIN projection about the map centre (RA increasing to the left, east),
    offsets ``xs``/``ys`` and pixel size ``pix`` in arcsec, then the spectral axis.

    Built as one WCS object and written with ``to_header()``, so every axis has its CUNIT
    and the values are in it; ``.celestial`` is the moment map's WCS.
    """
    pixel = (pix * u.arcsec).to_value(u.deg)
    velocity = velocity_axis(spectral, 2)
    wcs = WCS(naxis=3)
    wcs.wcs.ctype = ["RA---SIN", "DEC--SIN", "VRAD"]
    wcs.wcs.cunit = ["deg", "deg", VELOCITY.to_string("fits")]
    wcs.wcs.crval = [u.Quantity(ref["RA"], u.deg).value, u.Quantity(ref["DEC"], u.deg).value,
                     velocity[0].to_value(VELOCITY)]
    wcs.wcs.cdelt = [-pixel, pixel, (velocity[1] - velocity[0]).to_value(VELOCITY)]
    wcs.wcs.crpix = [float(xs[0] / pix + 1), float(-ys[0] / pix + 1), 1.0]
    wcs.wcs.restfrq = spectral.wcs.restfrq
    wcs.wcs.specsys = "LSRK"
    return wcs


def identity_cards(ref: fits.Header) -> dict[str, Any]:
    return {key: ref[key] for key in ("OBJECT", "LINE", "TELESCOP", "INSTRUME") if key in ref}


def quicklook(path: Path, mom0: np.ndarray, xs: np.ndarray, ys: np.ndarray, pix: float,
              samples: tuple[np.ndarray, np.ndarray], peak: tuple[float, float], title: str,
              scratch_root: Path) -> None:
    """PNG of the moment-0 map.

    Matplotlib writes a font cache on first use, by default into $HOME (or /tmp when
    that is read-only, as in an image). Unless a writable MPLCONFIGDIR was configured
    on purpose, it is pointed at a scratch dir inside the output dir, removed after.
    """
    with tempfile.TemporaryDirectory(dir=scratch_root, prefix=".mplconfig-") as scratch:
        configured = os.environ.get("MPLCONFIGDIR")
        if not (configured and os.access(configured, os.W_OK)):
            os.environ["MPLCONFIGDIR"] = scratch
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        extent = (xs[0] + pix / 2, xs[-1] - pix / 2, ys[0] - pix / 2, ys[-1] + pix / 2)
        image = ax.imshow(mom0, origin="lower", extent=extent, cmap="viridis")
        fig.colorbar(image, ax=ax, shrink=0.8, label="integrated intensity [K km/s]")
        ax.plot(*samples, "w.", ms=2, alpha=0.6, label="spectra")
        ax.plot(*peak, "r+", ms=12, mew=2, label="fitted peak")
        ax.set_xlabel("RA offset [arcsec]")
        ax.set_ylabel("Dec offset [arcsec]")
        ax.set_title(title)
        ax.legend(loc="lower right", fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def make_map(ctx: StepContext) -> None:
    """Grid one source/line into a cube and moment-0 map, then measure the line."""
    params = ctx.parameters
    paths = ctx.fits_products("BASE_SPECTRA")
    sets, velocity = load_inputs(paths)
    ref = sets[0].header
    x = np.concatenate([s.positions["DRA"] for s in sets])
    y = np.concatenate([s.positions["DDEC"] for s in sets])
    data = np.concatenate([s.data for s in sets])
    rms = np.concatenate([s.positions.get("BL_RMS", np.ones(len(s.data))) for s in sets])
    weights = 1.0 / np.clip(rms, 1e-6, None) ** 2

    fwhm = float(params.get("kernel_fwhm_arcsec") or 1.25 * nearest_spacing(x, y))
    pix = float(params.get("pixel_arcsec") or fwhm / 3)
    cutoff = float(params.get("kernel_cutoff_fwhm", 1.5)) * fwhm
    xs = pix * np.arange(np.ceil(x.max() / pix), np.floor(x.min() / pix) - 1, -1)
    ys = pix * np.arange(np.floor(y.min() / pix), np.ceil(y.max() / pix) + 1)
    gx, gy = np.meshgrid(xs, ys)
    flat, wsum, _ = grid_spectra(x, y, data, weights, gx.ravel(), gy.ravel(), fwhm, cutoff)
    nearest = np.sqrt(((gx.ravel()[:, None] - x) ** 2 + (gy.ravel()[:, None] - y) ** 2).min(1))
    flat[nearest > fwhm] = np.nan  # outside the observed area
    cube = flat.T.reshape(len(velocity), len(ys), len(xs))

    mean = np.average(data, axis=0, weights=weights)
    lo, hi = moment_window(params, velocity, mean, sets)
    in_window = (velocity >= lo) & (velocity <= hi)
    dv = abs(float(velocity[1] - velocity[0]))
    mom0 = cube[in_window].sum(axis=0) * dv
    with warnings.catch_warnings():  # pixels outside the coverage are all-NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        # line-free channels; clipping keeps a residual ripple peak out of the noise
        _, _, pixel_rms = sigma_clipped_stats(cube[~in_window], axis=0, sigma=4.0)

    map_fit = fit_map(gx.ravel(), gy.ravel(), mom0.ravel())
    x0, y0 = map_fit["x0_arcsec"], map_fit["y0_arcsec"]
    spectrum, _, n_eff = grid_spectra(
        x, y, data, weights, np.array([x0]), np.array([y0]), fwhm, cutoff)
    line = fit_line(velocity, spectrum[0])
    peak_rms = robust_sigma(spectrum[0][~in_window])
    j, i = np.unravel_index(np.nanargmax(mom0), mom0.shape)

    name = f"{ref['OBJECT']}_{ref['LINE']}"
    wcs = map_wcs(ref, xs, ys, pix, sets[0].spectral)
    kernel = (fwhm, "[arcsec] gridding kernel FWHM")
    cube_hdu = fits.PrimaryHDU(cube.astype(np.float32), header=wcs.to_header())
    cube_hdu.header.update({**identity_cards(ref), "BUNIT": u.K.to_string("fits"),
                            "KERNFWHM": kernel, "NSPECTRA": len(data), "CHAIPROD": "CUBE"})
    cube_path = ctx.out("science", f"{name}_cube.fits")
    cube_hdu.writeto(cube_path, overwrite=True, checksum=True)
    mom0_hdu = fits.PrimaryHDU(mom0.astype(np.float32), header=wcs.celestial.to_header())
    mom0_hdu.header.update({**identity_cards(ref), "BUNIT": MOMENT0_UNIT.to_string("fits"),
                            "VMIN": (lo, f"[{VELOCITY}] moment window start"),
                            "VMAX": (hi, f"[{VELOCITY}] moment window end"),
                            "CHAIPROD": "MOMENT0", "KERNFWHM": kernel})
    mom0_path = ctx.out("science", f"{name}_mom0.fits")
    mom0_hdu.writeto(mom0_path, overwrite=True, checksum=True)
    quicklook(ctx.out("plots", f"{name}_mom0.png"), mom0, xs, ys, pix, (x, y), (x0, y0),
              f"{ref['OBJECT']} {ref['LINE']} moment 0", ctx.output_dir)

    stats = {
        "source": ref["OBJECT"], "line_id": ref["LINE"], "n_spectra": int(len(data)),
        "n_packages": len(sets), "packages": sorted(str(s.header.get("PACKAGE")) for s in sets),
        "rms_k": float(np.median(pixel_rms[np.isfinite(pixel_rms)])),
        "peak": {"mom0_k_kms": float(mom0[j, i]),
                 "pixel_offset_arcsec": [float(xs[i]), float(ys[j])]},
        "peak_position_arcsec": {"dra": x0, "ddec": y0, "dra_err": map_fit["x0_err_arcsec"],
                                 "ddec_err": map_fit["y0_err_arcsec"]},
        "map_fit": map_fit,
        "line_fit": {**line, "rms_k": peak_rms, "n_eff_spectra": float(n_eff[0])},
        "kernel_fwhm_arcsec": fwhm, "pixel_arcsec": pix, "moment_window_kms": [lo, hi],
    }
    ctx.write_json("statistics", f"{name}_stats.json", stats)
    snr = line["peak_k"] / peak_rms if peak_rms > 0 else float("inf")
    coverage = float(np.isfinite(mom0).mean())
    qa = {
        "n_spectra": int(len(data)), "coverage_fraction": coverage, "rms_k": stats["rms_k"],
        "baseline_rms_median_k": float(np.median(rms)), "peak_snr": float(snr),
        "checks": {"line_detected": bool(snr > 5), "peak_inside_map": bool(
            xs.min() <= x0 <= xs.max() and ys.min() <= y0 <= ys.max())},
    }
    qa["status"] = "ok" if all(qa["checks"].values()) else "warn"
    ctx.write_json("qa", f"{name}_qa.json", qa)
    provenance = {**ctx.provenance(), "source": ref["OBJECT"], "line_id": ref["LINE"]}
    for product in (cube_path, mom0_path):
        quality = {"rms_k": stats["rms_k"], "peak_snr": qa["peak_snr"]}
        ctx.write_sidecar(product, provenance, quality)
    ctx.log(f"{name}: {len(data)} spectra from {len(sets)} packages, kernel {fwhm:.1f}\", "
            f"pixel {pix:.1f}\", map {len(xs)}x{len(ys)}")
    ctx.log(f"peak at ({x0:+.2f}, {y0:+.2f}) arcsec; line {line['peak_k']:.3f} K at "
            f"{line['center_kms']:.2f} km/s, FWHM {line['fwhm_kms']:.2f} km/s, S/N {snr:.1f}")


def main(argv: list[str] | None = None) -> int:
    return run("chai-gridding", make_map, argv)


if __name__ == "__main__":
    raise SystemExit(main())
