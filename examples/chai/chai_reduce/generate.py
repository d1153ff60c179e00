"""chai-generate: synthetic CHAI nights, as raw data packages plus an ingest manifest.

Each scan is one raw data package with hot-load, cold-load and sky FITS files. The
sky file holds a shared OFF spectrum and ON spectra along a strip of RA offsets at
the scan's Dec offset, so a night's scans of a target make a small map. Powers are
``gain x (T_rx + T_sky)`` with radiometer noise, a channel-dependent bandpass that
drifts slightly between loads and sky, a residual polynomial baseline plus a
sinusoidal standing wave, and a Gaussian line whose strength follows a 2-D Gaussian
on the sky. Everything injected is written to the FITS headers and ``truth.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import yaml
from astropy.io import fits

from . import __version__
from .contract import sha256_of
from .sky import LINES_GHZ, LineTruth, line_truth, name_seed, receiver, source_model
from .spectra import C_KMS, VELOCITY, spectral_wcs

T_ATM_K = 270.0
T_COLD_K = 80.0
SPAN_IN_FWHM = 12.0  # the band covers this many line widths
LINE_OFFSET_IN_SPAN = 0.1  # line sits this fraction of the band below the band centre
MJD_EPOCH = datetime(1858, 11, 17, tzinfo=timezone.utc)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="chai-generate", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="archive root directory")
    parser.add_argument("--night", type=date.fromisoformat, required=True, help="YYYY-MM-DD")
    parser.add_argument("--sources", default="NGC253", help="comma-separated, e.g. NGC253,ORION")
    parser.add_argument("--lines", default="CO43", help=f"comma-separated of {sorted(LINES_GHZ)}")
    parser.add_argument("--scans-per-target", type=int, default=4)
    parser.add_argument("--positions-per-scan", type=int, default=9)
    parser.add_argument("--spacing-arcsec", type=float, default=8.0,
                        help="distance between map positions and between scan rows")
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--integration-s", type=float, default=5.0, help="per ON position")
    parser.add_argument("--seed", type=int, default=None, help="default: derived from --night")
    parser.add_argument("--location-name", default="chai-archive")
    parser.add_argument("--observing-program", default="GEco")
    args = parser.parse_args(argv)
    args.sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    args.lines = [s.strip() for s in args.lines.split(",") if s.strip()]
    unknown = [line for line in args.lines if line not in LINES_GHZ]
    if unknown:
        parser.error(f"unknown line(s) {unknown}; known: {sorted(LINES_GHZ)}")
    if args.scans_per_target < 1 or args.positions_per_scan < 1 or args.channels < 32:
        parser.error("need >= 1 scan, >= 1 position and >= 32 channels")
    if args.seed is None:
        args.seed = name_seed(args.night.isoformat())[0]
    return args


def spectral_setup(truth: LineTruth, n_channels: int) -> tuple[float, float]:
    """(velocity of channel 1, channel width) so the line is well resolved, off-centre."""
    span = SPAN_IN_FWHM * truth.fwhm_kms
    dv = span / n_channels
    v_first = truth.center_kms + LINE_OFFSET_IN_SPAN * span - span / 2 + dv / 2
    return v_first, dv


def simulate_scan(
    truth: LineTruth, args: argparse.Namespace, rng: np.random.Generator, dy: float
) -> dict[str, Any]:
    """Raw powers of one scan and the instrument state that produced them."""
    n, m = args.channels, args.positions_per_scan
    v_first, dv = spectral_setup(truth, n)
    velocity = v_first + dv * np.arange(n)
    x = np.linspace(-1, 1, n)
    dnu_hz = truth.rest_freq_ghz * 1e9 * dv / C_KMS
    t_on, t_off, t_load = args.integration_s, args.integration_s * np.sqrt(m), 2.0

    trx_nominal, tau_nominal = receiver(truth.line_id)
    elevation = rng.uniform(35, 70)
    airmass = 1 / np.sin(np.radians(elevation))
    tau = tau_nominal * rng.uniform(0.8, 1.2)
    extinction = np.exp(-tau * airmass)
    t_hot = rng.uniform(288, 296)
    trx = trx_nominal * rng.uniform(0.9, 1.1) * (1 + 0.05 * x)
    t_sky = T_ATM_K * (1 - extinction)
    bandpass = 1e4 * (1 + 0.15 * x + 0.08 * np.sin(3 * np.pi * x + rng.uniform(0, 2 * np.pi)))

    def measure(temperature: np.ndarray, t_int: float, drift: np.ndarray | float = 0.0):
        noise = rng.standard_normal(temperature.shape) / np.sqrt(dnu_hz * t_int)
        return bandpass * (1 + drift) * temperature * (1 + noise)

    def drift() -> np.ndarray:
        """Slow gain change since the load measurement: an offset and a slope."""
        return rng.normal(0, 2e-4) + rng.normal(0, 1e-4) * x

    noise_k = float(np.median((trx + t_sky) / extinction)) * np.sqrt(
        1 / (dnu_hz * t_on) + 1 / (dnu_hz * t_off))
    ripple_k = noise_k * rng.uniform(0.5, 1.0)
    ripple = ripple_k * np.sin(np.pi * rng.uniform(0.5, 1.0) * (x + 1) + rng.uniform(0, 6.3))
    poly = np.polynomial.polynomial.polyval(x, rng.normal(0, [0.3, 0.2, 0.15]))

    dx = (np.arange(m) - (m - 1) / 2) * args.spacing_arcsec
    line_peaks = truth.amplitude_at(dx, np.full(m, dy))
    on = np.empty((m, n))
    for j in range(m):
        ta_star = line_peaks[j] * truth.profile(velocity) + poly + ripple
        on[j] = measure(trx + t_sky + ta_star * extinction, t_on, drift())
    return {
        "velocity": velocity, "v_first": v_first, "dv": dv,
        "hot": measure(t_hot + trx, t_load), "cold": measure(T_COLD_K + trx, t_load),
        "off": measure(trx + t_sky, t_off, drift()), "on": on,
        "dx": dx, "dy": np.full(m, dy), "line_peaks": line_peaks,
        "t_hot": t_hot, "elevation": elevation, "tau": tau, "airmass": airmass,
        "t_on": t_on, "t_off": t_off, "t_load": t_load,
        "trx_k": float(np.median(trx)), "noise_k": noise_k, "ripple_k": ripple_k,
    }


def write_package(pkg_dir: Path, header: fits.Header, scan: dict, mjd: np.ndarray) -> None:
    pkg_dir.mkdir(parents=True, exist_ok=True)
    for role, t_load in (("HOT", scan["t_hot"]), ("COLD", T_COLD_K)):
        hdu = fits.PrimaryHDU(scan[role.lower()], header=header.copy())
        hdu.header["OBSTYPE"] = (role, "calibration load")
        hdu.header["TLOAD"] = (t_load, "[K] physical load temperature")
        hdu.header["TINT"] = (scan["t_load"], "[s] integration time")
        hdu.writeto(pkg_dir / f"{role.lower()}.fits", overwrite=True, checksum=True)
    primary = fits.PrimaryHDU(header=header.copy())
    primary.header["OBSTYPE"] = ("SKY", "position-switched sky spectra")
    off = fits.ImageHDU(scan["off"], name="OFF")
    off.header["TINT"] = (scan["t_off"], "[s] integration time")
    on = fits.ImageHDU(scan["on"], name="ON")
    on.header["TINT"] = (scan["t_on"], "[s] integration time per position")
    table = fits.BinTableHDU.from_columns([
        fits.Column(name="DRA", format="D", unit="arcsec", array=scan["dx"]),
        fits.Column(name="DDEC", format="D", unit="arcsec", array=scan["dy"]),
        fits.Column(name="TINT", format="D", unit="s", array=np.full(len(mjd), scan["t_on"])),
        fits.Column(name="MJD", format="D", unit="d", array=mjd),
        fits.Column(name="TRUTPEAK", format="D", unit="K", array=scan["line_peaks"]),
    ], name="POSITIONS")
    fits.HDUList([primary, off, on, table]).writeto(pkg_dir / "sky.fits", overwrite=True,
                                                    checksum=True)


def scan_header(
    truth: LineTruth, scan: dict, names: dict[str, str], start: datetime
) -> fits.Header:
    model = source_model(truth.source)
    header = fits.Header()
    header.update(spectral_wcs(scan["v_first"] * VELOCITY, scan["dv"] * VELOCITY,
                               truth.rest_freq_ghz * u.GHz).to_header())
    cards = [
        ("ORIGIN", f"chai-generate {__version__}", "synthetic data"),
        ("TELESCOP", "FYST", ""), ("INSTRUME", "CHAI", ""),
        ("OBJECT", truth.source, ""), ("LINE", truth.line_id, "line identifier"),
        ("RA", model.ra_deg, "[deg] map centre"), ("DEC", model.dec_deg, "[deg] map centre"),
        ("SCAN", names["scan"], "executed obs unit"), ("PACKAGE", names["package"], ""),
        ("NIGHT", names["night"], ""), ("DATE-OBS", start.strftime("%Y-%m-%dT%H:%M:%S"), "UTC"),
        ("ELEVATIO", scan["elevation"], "[deg]"), ("TAU_ZEN", scan["tau"], "zenith opacity"),
        ("THOT", scan["t_hot"], "[K] hot load"), ("TCOLD", T_COLD_K, "[K] cold load"),
        ("TRUTPEAK", truth.peak_k, "[K] truth: Ta* line peak at map peak"),
        ("TRUVLINE", truth.center_kms, "[km/s] truth: line centre"),
        ("TRUFWHMV", truth.fwhm_kms, "[km/s] truth: line FWHM"),
        ("TRUCHAN", (truth.center_kms - scan["v_first"]) / scan["dv"], "truth: 0-based chan"),
        ("TRUX0", truth.x0_arcsec, "[arcsec] truth: RA offset of peak"),
        ("TRUY0", truth.y0_arcsec, "[arcsec] truth: Dec offset of peak"),
        ("TRUSKYFW", truth.sky_fwhm_arcsec, "[arcsec] truth: FWHM on sky"),
        ("TRUTRX", scan["trx_k"], "[K] truth: median receiver temperature"),
        ("TRUNOISE", scan["noise_k"], "[K] truth: expected Ta* rms per channel"),
        ("TRURIPPL", scan["ripple_k"], "[K] truth: baseline ripple amplitude"),
    ]
    for key, value, comment in cards:
        header[key] = (value, comment)
    return header


def mjd_of(moment: datetime) -> float:
    return (moment - MJD_EPOCH).total_seconds() / 86400.0


def checksum_of_package(files: list[dict[str, Any]]) -> str:
    """sha256 over the sorted ``"<relpath> <checksum>\\n"`` lines of the package's files."""
    lines = sorted(f"{f['path']} {f['checksum']}\n" for f in files)
    return "sha256:" + hashlib.sha256("".join(lines).encode()).hexdigest()


ISO = "%Y-%m-%dT%H:%M:%SZ"


def observe_target(
    source: str, line_id: str, args: argparse.Namespace, night_dir: Path,
    clock: datetime, ingest: dict[str, list], truth_out: dict[str, Any],
) -> datetime:
    """Write all scans of one (source, line) and register them; returns the end time."""
    truth = line_truth(source, line_id)
    night = night_dir.name
    obs_unit = f"{source}-{line_id}"
    ingest["obs_units"].append({
        "name": obs_unit, "source": source, "line_id": line_id,
        "observing_program": args.observing_program, "instrument_module": "CHAI"})
    offsets, scans = [], []
    n_scans = args.scans_per_target
    for k in range(n_scans):
        rng = np.random.default_rng([args.seed, *name_seed(source, line_id), k])
        dy = (k - (n_scans - 1) / 2) * args.spacing_arcsec
        scan = simulate_scan(truth, args, rng, dy)
        scan_name = f"{obs_unit}-{night.replace('-', '')}-s{k + 1:03d}"
        names = {"night": night, "scan": scan_name, "package": f"chai-{scan_name}"}
        step_s = scan["t_on"] + 2.0
        mjd = np.array([mjd_of(clock + timedelta(seconds=30 + i * step_s))
                        for i in range(len(scan["dx"]))])
        pkg_dir = night_dir / names["package"]
        write_package(pkg_dir, scan_header(truth, scan, names, clock), scan, mjd)
        files = [{"path": p.name, "size_bytes": p.stat().st_size, "checksum": sha256_of(p),
                  "file_type": "fits"} for p in sorted(pkg_dir.glob("*.fits"))]
        end = clock + timedelta(seconds=60.0 + scan["t_off"] + len(scan["dx"]) * step_s)
        ingest["executed_obs_units"].append({
            "name": scan_name, "obs_unit": obs_unit,
            "start_time": clock.strftime(ISO), "end_time": end.strftime(ISO)})
        observation = {
            "source": source, "line_id": line_id, "night": night,
            "frequency_ghz": truth.rest_freq_ghz, "n_channels": args.channels,
            "velocity_resolution_kms": scan["dv"], "n_positions": len(scan["dx"]),
            "dec_offset_arcsec": dy, "elevation_deg": round(scan["elevation"], 3),
            "tau_zenith": round(scan["tau"], 4), "integration_s": scan["t_on"]}
        ingest["raw_data_packages"].append({
            "name": names["package"], "executed_obs_unit": scan_name,
            "instrument_module": "CHAI", "state": "ARCHIVED", "location": args.location_name,
            "path": f"{night}/{names['package']}", "checksum": checksum_of_package(files),
            "size_bytes": sum(f["size_bytes"] for f in files),
            "metadata": {"observation": observation, "generator": {
                "name": "chai-generate", "version": __version__, "seed": args.seed}},
            "files": files})
        keys = ("elevation", "tau", "t_hot", "trx_k", "noise_k", "ripple_k")
        scans.append({**names, "source": source, "line_id": line_id,
                      **{key: float(scan[key]) for key in keys}})
        offsets += np.column_stack([scan["dx"], scan["dy"]]).tolist()
        clock = end
    v_first, dv = spectral_setup(truth, args.channels)
    truth_out["scans"] += scans
    truth_out["targets"][obs_unit] = {
        **truth.as_dict(),
        "velocity_resolution_kms": dv,
        "line_channel": (truth.center_kms - v_first) / dv,
        "noise_rms_k_max": max(s["noise_k"] for s in scans),
        "ripple_k_max": max(s["ripple_k"] for s in scans),
        "offsets_arcsec": offsets,
    }
    return clock


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out.resolve()
    night_dir = out / args.night.isoformat()
    ingest: dict[str, list] = {
        "locations": [{"name": args.location_name, "type": "LONG_TERM_ARCHIVE",
                       "base_path": str(out)}],
        "observing_programs": [{"name": args.observing_program}],
        "instrument_modules": [{"name": "CHAI", "instrument": "CHAI"}],
        "sources": [], "obs_units": [], "executed_obs_units": [], "raw_data_packages": [],
    }
    truth_out: dict[str, Any] = {"night": night_dir.name, "seed": args.seed,
                                 "targets": {}, "scans": []}
    clock = datetime(args.night.year, args.night.month, args.night.day, 1, tzinfo=timezone.utc)
    for source in args.sources:
        model = source_model(source)
        ingest["sources"].append({"name": source, "ra_deg": model.ra_deg,
                                  "dec_deg": model.dec_deg})
        for line_id in args.lines:
            clock = observe_target(source, line_id, args, night_dir, clock, ingest, truth_out)
    night_dir.mkdir(parents=True, exist_ok=True)
    (night_dir / "truth.json").write_text(json.dumps(truth_out, indent=2) + "\n")
    manifest = night_dir / "ingest.yaml"
    manifest.write_text(yaml.safe_dump(ingest, sort_keys=False, width=100))
    print(manifest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
