"""chai-calibration: hot/cold-load calibration of raw CHAI packages to Ta* spectra.

The Y-factor of the hot and cold loads gives the receiver temperature and the
per-channel gain (which divides out the bandpass). The position-switched sky
power ``(ON - OFF) / gain`` is then corrected for atmospheric extinction with the
zenith opacity and elevation in the header, giving antenna temperature Ta*.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from .contract import ContractError, StepContext, run, sha256_of
from .spectra import SpectraSet, spectral_from_header, write_spectra

PRODUCT_KIND = "CAL_SPECTRA"


def files_by_role(package: dict[str, Any]) -> dict[str, Path]:
    """HOT/COLD/SKY files of a package, identified by their OBSTYPE header, checksum-verified."""
    roles: dict[str, Path] = {}
    for entry in package.get("files") or []:
        path = Path(entry["path"])
        if path.suffix.lower() != ".fits":
            continue
        if not path.is_file():
            raise ContractError(f"{package['name']}: input file {path} does not exist")
        expected = entry.get("checksum")
        if expected and sha256_of(path) != expected:
            raise ContractError(f"{package['name']}: checksum mismatch for {path}")
        roles[str(fits.getval(path, "OBSTYPE")).upper()] = path
    missing = {"HOT", "COLD", "SKY"} - set(roles)
    if missing:
        raise ContractError(f"{package['name']}: no {sorted(missing)} file in package")
    return roles


def calibrate_package(roles: dict[str, Path], params: dict[str, Any]) -> tuple[SpectraSet, dict]:
    with fits.open(roles["HOT"]) as hot, fits.open(roles["COLD"]) as cold:
        p_hot, p_cold = hot[0].data.astype(float), cold[0].data.astype(float)
        # The load thermometers in the headers win; parameters cover files without them.
        t_hot = float(hot[0].header.get("TLOAD", params.get("t_hot_k", float("nan"))))
        t_cold = float(cold[0].header.get("TLOAD", params.get("t_cold_k", float("nan"))))
    if not np.isfinite(t_hot - t_cold):
        raise ContractError("load temperatures unknown: no TLOAD header and no t_hot_k/t_cold_k")
    with fits.open(roles["SKY"]) as sky:
        header = sky[0].header.copy()
        p_off = sky["OFF"].data.astype(float)
        p_on = sky["ON"].data.astype(float)
        table = sky["POSITIONS"].data
        positions = {k: np.asarray(table[k], float) for k in ("DRA", "DDEC", "TINT", "MJD")}
    y_factor = p_hot / p_cold
    t_rx = (t_hot - y_factor * t_cold) / (y_factor - 1)
    gain = (p_hot - p_cold) / (t_hot - t_cold)
    tau = float(params.get("tau_zenith", header["TAU_ZEN"]))
    airmass = 1.0 / np.sin(np.radians(header["ELEVATIO"]))
    extinction_correction = np.exp(tau * airmass)
    t_sys = p_off / gain  # receiver + atmosphere, at the receiver input
    ta_star = (p_on - p_off) / gain * extinction_correction
    spectral = spectral_from_header(header)  # honours CUNIT1, whatever the raw file uses
    for key in [*spectral.to_header(), "CUNIT1", "OBSTYPE"]:  # the axis lives on SPECTRA now
        header.remove(key, ignore_missing=True)
    header["TSYS"] = (float(np.median(t_sys * extinction_correction)), "[K] median Tsys*")
    header["TRX"] = (float(np.median(t_rx)), "[K] median receiver temperature")
    header["THOTUSED"] = (t_hot, "[K]")
    header["TCOLUSED"] = (t_cold, "[K]")
    header["TAUUSED"] = (tau, "zenith opacity used")
    quality = {
        "tsys_median_k": header["TSYS"], "trx_median_k": header["TRX"],
        "n_spectra": int(ta_star.shape[0]), "airmass": float(airmass),
    }
    spectra = SpectraSet(header, ta_star, positions, t_sys * extinction_correction, spectral)
    return spectra, quality


def calibrate(ctx: StepContext) -> None:
    """Calibrate every raw package of the sub-group to Ta* spectra."""
    for package in ctx.raw_packages():
        spectra, quality = calibrate_package(files_by_role(package), ctx.parameters)
        spectra.header["PACKAGE"] = package["name"]
        path = ctx.out("science", f"{package['name']}_cal.fits")
        write_spectra(path, spectra, PRODUCT_KIND)
        metadata = {**ctx.provenance(), "package": package["name"],
                    **(package.get("observation") or {})}
        ctx.write_sidecar(path, metadata, quality)
        ctx.log(f"{package['name']}: {quality['n_spectra']} spectra, "
                f"Tsys*={quality['tsys_median_k']:.0f} K, Trx={quality['trx_median_k']:.0f} K")


def main(argv: list[str] | None = None) -> int:
    return run("chai-calibration", calibrate, argv)


if __name__ == "__main__":
    raise SystemExit(main())
