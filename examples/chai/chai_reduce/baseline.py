"""chai-baseline: polynomial baseline subtraction of calibrated CHAI spectra.

Residual baselines (drifts between ON and OFF, standing waves) survive
calibration. A polynomial is fitted to the line-free channels of each spectrum and
subtracted. The line window comes from the parameters (``line_window_kms``) or, with
``"auto"``, from the package's mean spectrum, where the line is easier to see than
in any single position.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .contract import ContractError, StepContext, run
from .fitting import find_line_mask, fit_baseline, robust_sigma
from .spectra import read_spectra, write_spectra

PRODUCT_KIND = "BASE_SPECTRA"


def line_mask(velocity: np.ndarray, data: np.ndarray, window, order: int) -> np.ndarray:
    if window in (None, "auto"):
        return find_line_mask(np.nanmean(data, axis=0), order)
    try:
        lo, hi = sorted(float(v) for v in window)
    except (TypeError, ValueError) as exc:
        raise ContractError(f"line_window_kms must be 'auto' or [lo, hi], got {window!r}") from exc
    return (velocity >= lo) & (velocity <= hi)


def output_name(path: Path) -> str:
    stem = path.stem[: -len("_cal")] if path.stem.endswith("_cal") else path.stem
    return f"{stem}_base.fits"


def subtract_baselines(ctx: StepContext) -> None:
    """Fit and subtract a polynomial baseline from every calibrated spectrum."""
    params = ctx.parameters
    order = int(params.get("baseline_order", 3))
    window = params.get("line_window_kms", "auto")
    for path in ctx.fits_products("CAL_SPECTRA"):
        spectra = read_spectra(path)
        velocity = spectra.velocity
        mask = line_mask(velocity, spectra.data, window, order)
        rms = np.empty(spectra.data.shape[0])
        for i, spectrum in enumerate(spectra.data):
            spectra.data[i] = spectrum - fit_baseline(spectrum, mask, order)
            rms[i] = robust_sigma(spectra.data[i][~mask])
        spectra.positions["BL_RMS"] = rms
        lo, hi = (float(velocity[mask].min()), float(velocity[mask].max())) if mask.any() \
            else (float("nan"), float("nan"))
        spectra.header["BLORDER"] = (order, "baseline polynomial order")
        spectra.header["LINEWLO"] = (lo, "[km/s] masked line window start")
        spectra.header["LINEWHI"] = (hi, "[km/s] masked line window end")
        out = ctx.out("science", output_name(path))
        write_spectra(out, spectra, PRODUCT_KIND)
        quality = {
            "baseline_rms_k": float(np.median(rms)), "baseline_rms_max_k": float(rms.max()),
            "baseline_order": order, "line_window_kms": [lo, hi],
            "line_free_channels": int((~mask).sum()), "n_spectra": int(rms.size),
        }
        metadata = {**ctx.provenance(), "input": path.name,
                    "package": spectra.header.get("PACKAGE"),
                    "source": spectra.header.get("OBJECT"), "line_id": spectra.header.get("LINE"),
                    "executed_obs_unit": spectra.header.get("SCAN")}
        ctx.write_sidecar(out, metadata, quality)
        ctx.log(f"{path.name}: order {order}, window [{lo:.1f}, {hi:.1f}] km/s, "
                f"rms {quality['baseline_rms_k']:.3f} K")


def main(argv: list[str] | None = None) -> int:
    return run("chai-baseline", subtract_baselines, argv)


if __name__ == "__main__":
    raise SystemExit(main())
