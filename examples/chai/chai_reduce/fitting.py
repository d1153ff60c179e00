"""Small numerical helpers: Levenberg-Marquardt, Gaussians, baselines, line finding.

Only numpy and astropy are required, so the container images stay small (no SciPy).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from astropy.stats import mad_std

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))



def least_squares(
    residual_model: Callable[[np.ndarray], np.ndarray], p0: np.ndarray, max_iter: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ``sum(model(p)**2)`` (model returns weighted residuals) with Levenberg-Marquardt.

    Returns the parameters and their covariance, scaled by the reduced chi-square so
    that it reflects the scatter actually seen in the data.
    """
    p = np.asarray(p0, dtype=float)
    r = residual_model(p)
    chi2 = float(r @ r)
    damping = 1e-3

    def jacobian(p: np.ndarray) -> np.ndarray:
        steps = 1e-6 * np.maximum(np.abs(p), 1e-3)
        cols = []
        for i, h in enumerate(steps):
            dp = np.zeros_like(p)
            dp[i] = h
            cols.append((residual_model(p + dp) - residual_model(p - dp)) / (2 * h))
        return np.stack(cols, axis=1)

    jac = jacobian(p)
    for _ in range(max_iter):
        normal = jac.T @ jac
        gradient = jac.T @ r
        lhs = normal + damping * np.diag(np.diag(normal) + 1e-12)
        try:
            step = -np.linalg.solve(lhs, gradient)
        except np.linalg.LinAlgError:
            break
        candidate = p + step
        r_new = residual_model(candidate)
        chi2_new = float(r_new @ r_new)
        if np.isfinite(chi2_new) and chi2_new < chi2:
            converged = chi2 - chi2_new < 1e-10 * max(chi2, 1e-30)
            p, r, chi2 = candidate, r_new, chi2_new
            jac = jacobian(p)
            damping = max(damping / 10, 1e-12)
            if converged:
                break
        else:
            damping *= 10
            if damping > 1e12:
                break
    dof = max(r.size - p.size, 1)
    try:
        cov = np.linalg.inv(jac.T @ jac) * chi2 / dof
    except np.linalg.LinAlgError:
        cov = np.full((p.size, p.size), np.nan)
    return p, cov


def gaussian_1d(v: np.ndarray, peak: float, center: float, fwhm: float) -> np.ndarray:
    return peak * np.exp(-4.0 * np.log(2.0) * ((v - center) / fwhm) ** 2)


def gaussian_2d(
    x: np.ndarray, y: np.ndarray, amp: float, x0: float, y0: float, fwhm: float
) -> np.ndarray:
    return amp * np.exp(-4.0 * np.log(2.0) * ((x - x0) ** 2 + (y - y0) ** 2) / fwhm**2)


def fit_line(velocity: np.ndarray, spectrum: np.ndarray) -> dict[str, float]:
    """Single Gaussian emission line; start values from the strongest smoothed channel."""
    good = np.isfinite(spectrum)
    v, s = velocity[good], spectrum[good]
    smooth = np.convolve(s, np.ones(5) / 5, mode="same")
    i = int(np.argmax(smooth))
    dv = abs(float(np.median(np.diff(v))))
    area = float(np.sum(np.clip(smooth, 0, None)) * dv)
    fwhm0 = max(area / max(smooth[i], 1e-12) / 1.0645, 3 * dv)
    p, cov = least_squares(
        lambda p: gaussian_1d(v, *p) - s, np.array([smooth[i], v[i], fwhm0])
    )
    err = np.sqrt(np.clip(np.diag(cov), 0, None))
    return {
        "peak_k": float(p[0]), "center_kms": float(p[1]), "fwhm_kms": float(abs(p[2])),
        "peak_err_k": float(err[0]), "center_err_kms": float(err[1]),
        "fwhm_err_kms": float(err[2]),
    }


def fit_map(x: np.ndarray, y: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """Circular 2-D Gaussian fitted to a (moment-0) map, started at its brightest pixel."""
    good = np.isfinite(values)
    x, y, z = x[good], y[good], values[good]
    i = int(np.argmax(z))
    extent = max(np.ptp(x), np.ptp(y), 1.0)
    p, cov = least_squares(
        lambda p: gaussian_2d(x, y, *p) - z, np.array([z[i], x[i], y[i], extent / 2])
    )
    err = np.sqrt(np.clip(np.diag(cov), 0, None))
    return {
        "amplitude": float(p[0]), "x0_arcsec": float(p[1]), "y0_arcsec": float(p[2]),
        "fwhm_arcsec": float(abs(p[3])), "x0_err_arcsec": float(err[1]),
        "y0_err_arcsec": float(err[2]),
    }


def normalised_channels(n: int) -> np.ndarray:
    """Channel coordinate in [-1, 1]: keeps polynomial fits well conditioned."""
    return np.linspace(-1.0, 1.0, n)


def fit_baseline(spectrum: np.ndarray, line_mask: np.ndarray, order: int) -> np.ndarray:
    """Least-squares polynomial through the line-free channels, evaluated everywhere."""
    x = normalised_channels(spectrum.size)
    use = ~line_mask & np.isfinite(spectrum)
    if use.sum() <= order + 1:
        raise ValueError("too few line-free channels for the baseline order")
    coeffs = np.polynomial.polynomial.polyfit(x[use], spectrum[use], order)
    return np.polynomial.polynomial.polyval(x, coeffs)


def robust_sigma(values: np.ndarray) -> float:
    """Gaussian-equivalent scatter from the median absolute deviation (ignores the line,
    and NaN channels): ``astropy.stats.mad_std``."""
    return float(mad_std(values, ignore_nan=True))


def find_line_mask(spectrum: np.ndarray, order: int, threshold: float = 4.0) -> np.ndarray:
    """Channels holding the (single, emission) line, found without prior knowledge.

    Iterates: fit a baseline outside the current mask, smooth the residual, and mask
    the contiguous run of significant channels around the strongest one, widened by
    half its width on each side so the line wings do not bias the baseline.
    """
    n = spectrum.size
    mask = np.zeros(n, dtype=bool)
    width = max(3, n // 64)
    kernel = np.ones(width) / width
    for _ in range(8):
        residual = spectrum - fit_baseline(spectrum, mask, order)
        sigma = robust_sigma(residual[~mask])
        smooth = np.convolve(residual, kernel, mode="same")
        significant = smooth > threshold * sigma / np.sqrt(width)
        if not significant.any():
            return mask
        peak = int(np.argmax(np.where(significant, smooth, -np.inf)))
        lo, hi = peak, peak
        while lo > 0 and significant[lo - 1]:
            lo -= 1
        while hi < n - 1 and significant[hi + 1]:
            hi += 1
        grow = (hi - lo + 1) // 2 + width
        new_mask = np.zeros(n, dtype=bool)
        new_mask[max(lo - grow, 0): min(hi + grow + 1, n)] = True
        if np.array_equal(new_mask, mask):
            break
        mask = new_mask
    return mask
