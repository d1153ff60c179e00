"""End-to-end science tests of the CHAI example programs (examples/chai).

The programs are driven as the orchestrator would drive them: a synthetic night
is generated, manifests are written by hand with host paths, and the console
scripts run as subprocesses with only the contract's environment. The final map
must recover the line the generator injected.

Tolerances are derived from the injected noise, not from the results:
statistical part = K_SIGMA x the Cramer-Rao error of a Gaussian fit at the known
per-channel noise (reduced by the kernel's effective number of spectra), plus a
stated systematic budget for the residual standing-wave ripple and for gridding.
Requires ``pip install -e examples/chai``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

CHANNELS = 256
SCANS = 4
POSITIONS = 9
SPACING = 8.0
KERNEL_FWHM = 10.0  # arcsec, passed to chai-gridding
BASELINE_ORDER = 3
K_SIGMA = 5.0
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
TARGET = ("NGC253", "CO43")

pytestmark = pytest.mark.slow  # one ~7 s end-to-end chain, shared by the tests below


def script(name: str) -> str:
    """Console script next to the running interpreter (the venv), else on PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        pytest.fail(f"{name} not installed: run `pip install -e examples/chai`")
    return found


def sha256(data: bytes | Path) -> str:
    raw = data.read_bytes() if isinstance(data, Path) else data
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")}


class Sandbox:
    """Empty HOME, TMPDIR and cwd: anything a program writes there breaks the contract."""

    def __init__(self, root: Path) -> None:
        self.dirs = {name: root / name for name in ("home", "tmp", "cwd")}
        for d in self.dirs.values():
            d.mkdir(parents=True)

    def env(self, **workflow: str) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", ""), "HOME": str(self.dirs["home"]),
                "TMPDIR": str(self.dirs["tmp"]), "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1",
                # The images set this too; it keeps Python from caching bytecode
                # next to the (editable) package sources.
                "PYTHONDONTWRITEBYTECODE": "1", **workflow}

    def leftovers(self) -> list[str]:
        return [str(p) for d in self.dirs.values() for p in d.rglob("*")]


def raw_entry(ingest: dict, package: dict, pkg_id: int) -> dict[str, Any]:
    base = Path(ingest["locations"][0]["base_path"])
    obs = package["metadata"]["observation"]
    return {
        "id": pkg_id, "name": package["name"], "checksum": package["checksum"],
        "metadata": package["metadata"],
        "observation": {"source": obs["source"], "line_id": obs["line_id"],
                        "executed_obs_unit": package["executed_obs_unit"],
                        "obs_unit": f"{obs['source']}-{obs['line_id']}",
                        "instrument_module": "CHAI", "observing_program": "GEco"},
        "files": [{"path": str(base / package["path"] / f["path"]), "relative_path": f["path"],
                   "checksum": f["checksum"], "size_bytes": f["size_bytes"],
                   "file_type": f["file_type"]} for f in package["files"]],
    }


def products_of(step: str, key: str, out_dir: Path) -> list[dict[str, Any]]:
    """Everything a step wrote, registered as the orchestrator would (sidecars included)."""
    return [{"id": i, "step": step, "sub_group_key": key, "type": "INTERMEDIATE",
             "path": str(p), "relative_path": str(p.relative_to(out_dir)),
             "checksum": sha256(p), "metadata": {}}
            for i, p in enumerate(sorted(q for q in out_dir.rglob("*") if q.is_file()))]


def manifest(step: str, dims: dict[str, str], out_dir: Path, params: dict | None = None,
             raw: list | None = None, products: list | None = None) -> dict[str, Any]:
    key = ",".join(f"{k}={v}" for k, v in dims.items())
    program = {"calibrate": "chai-calibration", "baseline": "chai-baseline",
               "grid": "chai-gridding"}[step]
    return {
        "schema_version": 1, "run": {"id": 1, "dagster_run_id": "test"},
        "pipeline": {"id": 1, "name": "chai_standing"},
        "step": {"id": 1, "name": step, "is_final": step == "grid", "group_by": list(dims)},
        "sub_group": {"key": key, "dimensions": dims},
        "software": {"name": program, "version": "1.0.0", "image": "", "digest": ""},
        "parameters": params or {}, "resources": {"cpu": 1, "memory_gb": 2, "time_hours": 1},
        "inputs": {"raw_data_packages": raw or [], "products": products or []},
        "output_dir": str(out_dir), "workspace_dir": str(out_dir), "logs_dir": str(out_dir),
    }


def run_steps(sandbox: Sandbox, jobs: list[tuple[dict, Path]]) -> list[subprocess.CompletedProcess]:
    """Run step containers' programs concurrently, like the orchestrator's sub-groups."""
    procs = []
    for doc, out_dir in jobs:
        out_dir.mkdir(parents=True)  # the orchestrator provides an empty output dir
        manifest_path = out_dir.parent / f"{out_dir.name}.manifest.json"
        manifest_path.write_text(json.dumps(doc))
        env = sandbox.env(WORKFLOW_MANIFEST=str(manifest_path), WORKFLOW_OUTPUT_DIR=str(out_dir),
                          WORKFLOW_STEP=doc["step"]["name"], WORKFLOW_RUN_ID="1",
                          WORKFLOW_SUB_GROUP_KEY=doc["sub_group"]["key"])
        procs.append(subprocess.Popen([script(doc["software"]["name"])], env=env,
                                      cwd=sandbox.dirs["cwd"], text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return results


def run_ok(sandbox: Sandbox, jobs: list[tuple[dict, Path]]) -> None:
    for result in run_steps(sandbox, jobs):
        assert result.returncode == 0, f"{result.args} failed:\n{result.stderr}"


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("chai")
    sandbox = Sandbox(root / "sandbox")
    archive = root / "archive"
    source, line = TARGET
    subprocess.run(
        [script("chai-generate"), "--out", str(archive), "--night", "2026-03-12",
         "--sources", source, "--lines", line, "--scans-per-target", str(SCANS),
         "--positions-per-scan", str(POSITIONS), "--spacing-arcsec", str(SPACING),
         "--channels", str(CHANNELS), "--seed", "7"],
        check=True, env=sandbox.env(), cwd=sandbox.dirs["cwd"], capture_output=True)
    night = archive / "2026-03-12"
    ingest = yaml.safe_load((night / "ingest.yaml").read_text())
    truth = json.loads((night / "truth.json").read_text())
    archive_before = tree_state(archive)
    work = root / "work"

    cal_jobs = []
    for i, package in enumerate(ingest["raw_data_packages"]):
        out = work / "calibrate" / package["executed_obs_unit"]
        dims = {"executed_obs_unit": package["executed_obs_unit"]}
        cal_jobs.append((manifest("calibrate", dims, out, raw=[raw_entry(ingest, package, i)]),
                         out))
    run_ok(sandbox, cal_jobs)
    base_jobs = []
    for doc, cal_out in cal_jobs:
        out = work / "baseline" / cal_out.name
        products = products_of("calibrate", doc["sub_group"]["key"], cal_out)
        params = {"baseline_order": BASELINE_ORDER, "line_window_kms": "auto"}
        base_jobs.append((manifest("baseline", doc["sub_group"]["dimensions"], out, params,
                                   products=products), out))
    run_ok(sandbox, base_jobs)
    grid_out = work / "grid" / f"{source}-{line}"
    products = [p for doc, out in base_jobs
                for p in products_of("baseline", doc["sub_group"]["key"], out)]
    run_ok(sandbox, [(manifest("grid", {"source": source, "line_id": line}, grid_out,
                               {"kernel_fwhm_arcsec": KERNEL_FWHM}, products=products), grid_out)])
    stats = json.loads(next((grid_out / "statistics").glob("*.json")).read_text())
    return {"truth": truth["targets"][f"{source}-{line}"], "stats": stats, "work": work,
            "grid_out": grid_out, "sandbox": sandbox, "archive": archive,
            "archive_before": archive_before, "base_outs": [o for _, o in base_jobs],
            "cal_outs": [o for _, o in cal_jobs]}


# --- what the final map must show -------------------------------------------------


def gaussian(v: np.ndarray, peak: float, center: float, fwhm: float) -> np.ndarray:
    return peak * np.exp(-4 * np.log(2) * ((v - center) / fwhm) ** 2)


def gaussian_2d(x: np.ndarray, y: np.ndarray, amp: float, x0: float, y0: float,
                fwhm: float) -> np.ndarray:
    return amp * np.exp(-4 * np.log(2) * ((x - x0) ** 2 + (y - y0) ** 2) / fwhm**2)


def cramer_rao(model, p: list[float], noise: float) -> np.ndarray:
    """Smallest achievable standard errors of p for white noise ``noise`` on model(p)."""
    p0 = np.asarray(p, dtype=float)
    cols = []
    for i in range(p0.size):
        dp = np.zeros_like(p0)
        dp[i] = 1e-6 * max(abs(p0[i]), 1.0)
        cols.append((model(p0 + dp) - model(p0 - dp)) / (2 * dp[i]))
    jac = np.stack(cols, axis=1)
    return noise * np.sqrt(np.diag(np.linalg.inv(jac.T @ jac)))


def expectations(truth: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """(expected value, tolerance) of each measured quantity, from the injected truth.

    - The kernel smooths the sky Gaussian: the map peak drops by s^2 / (s^2 + k^2).
    - Line: K_SIGMA x Cramer-Rao error at the per-channel noise divided by sqrt(N_eff),
      N_eff = effective number of spectra under the kernel at the peak; plus the
      largest injected ripple amplitude (what a cubic may leave under the line), half
      a channel (centre) or one channel (width), and half the smoothing correction
      for the peak (gridding is a discrete, not a continuous, convolution).
    - Position: K_SIGMA x Cramer-Rao error of a 2-D Gaussian fitted to the raw
      spectra's integrated intensities, plus a quarter kernel FWHM for the pull of
      normalised kernel weights at the map edges.
    """
    fwhm_sky, fwhm_v = truth["sky_fwhm_arcsec"], truth["fwhm_kms"]
    x0, y0, center = truth["x0_arcsec"], truth["y0_arcsec"], truth["center_kms"]
    smoothing = fwhm_sky**2 / (fwhm_sky**2 + KERNEL_FWHM**2)
    peak = truth["peak_k"] * smoothing
    dv = truth["velocity_resolution_kms"]
    velocity = center + (np.arange(CHANNELS) - truth["line_channel"]) * dv
    offsets = np.asarray(truth["offsets_arcsec"])
    r2 = ((offsets - [x0, y0]) ** 2).sum(axis=1)
    w = np.exp(-0.5 * r2 / (KERNEL_FWHM / FWHM_PER_SIGMA) ** 2) * (r2 < (1.5 * KERNEL_FWHM) ** 2)
    n_eff = w.sum() ** 2 / (w**2).sum()
    noise = truth["noise_rms_k_max"]
    line = cramer_rao(lambda p: gaussian(velocity, *p), [peak, center, fwhm_v],
                      noise / np.sqrt(n_eff))
    ripple = truth["ripple_k_max"]
    mom0_noise = noise * dv * np.sqrt(3 * fwhm_v / dv)
    area = truth["peak_k"] * fwhm_v * 1.0645
    pos = cramer_rao(lambda p: gaussian_2d(offsets[:, 0], offsets[:, 1], *p),
                     [area, x0, y0, fwhm_sky], mom0_noise)
    return {
        "peak_k": (peak, K_SIGMA * line[0] + ripple + 0.5 * (truth["peak_k"] - peak)),
        "center_kms": (center, K_SIGMA * line[1] + 0.5 * dv + ripple / peak * fwhm_v),
        "fwhm_kms": (fwhm_v, K_SIGMA * line[2] + dv + ripple / peak * fwhm_v),
        "dra_arcsec": (x0, K_SIGMA * pos[1] + 0.25 * KERNEL_FWHM),
        "ddec_arcsec": (y0, K_SIGMA * pos[2] + 0.25 * KERNEL_FWHM),
    }


def measured(stats: dict[str, Any]) -> dict[str, float]:
    line, position = stats["line_fit"], stats["peak_position_arcsec"]
    return {"peak_k": line["peak_k"], "center_kms": line["center_kms"],
            "fwhm_kms": line["fwhm_kms"], "dra_arcsec": position["dra"],
            "ddec_arcsec": position["ddec"]}


def failures(stats: dict[str, Any], truth: dict[str, Any]) -> set[str]:
    got = measured(stats)
    return {name for name, (want, tol) in expectations(truth).items()
            if not abs(got[name] - want) <= tol}


def test_final_map_recovers_injected_line(chain: dict[str, Any]) -> None:
    got = measured(chain["stats"])
    for name, (want, tol) in expectations(chain["truth"]).items():
        print(f"{name:12s} measured {got[name]:9.3f} truth {want:9.3f} "
              f"error {got[name] - want:+8.3f} tolerance {tol:7.3f}")
    assert failures(chain["stats"], chain["truth"]) == set()
    assert chain["stats"]["n_spectra"] == SCANS * POSITIONS


def test_wrong_truth_is_rejected(chain: dict[str, Any]) -> None:
    truth = chain["truth"]
    expected = expectations(truth)
    keys = {"peak_k": "peak_k", "center_kms": "center_kms", "fwhm_kms": "fwhm_kms",
            "dra_arcsec": "x0_arcsec", "ddec_arcsec": "y0_arcsec"}
    for name, key in keys.items():
        tol = expected[name][1]
        shift = -2 * tol * truth["peak_k"] / expected["peak_k"][0] if name == "peak_k" else 2 * tol
        assert name in failures(chain["stats"], {**truth, key: truth[key] + shift}), name
    other = {**truth, "x0_arcsec": -5.0, "y0_arcsec": 7.0, "center_kms": 9.0, "fwhm_kms": 5.0,
             "peak_k": 40.0}  # ORION's line: every check must fail
    assert failures(chain["stats"], other) == set(keys)


def test_products_sidecars_and_calibration(chain: dict[str, Any]) -> None:
    from astropy.io import fits

    grid = chain["grid_out"]
    cube = next((grid / "science").glob("*_cube.fits"))
    with fits.open(cube) as hdul:
        assert hdul[0].data.shape[0] == CHANNELS
        assert [hdul[0].header[f"CTYPE{i}"] for i in (1, 2, 3)] == ["RA---SIN", "DEC--SIN",
                                                                   "VRAD"]
    assert next((grid / "science").glob("*_mom0.fits"))
    assert next((grid / "plots").glob("*.png")).read_bytes()[:4] == b"\x89PNG"
    assert json.loads(next((grid / "qa").glob("*.json")).read_text())["status"] == "ok"
    assert next((grid / "logs").glob("*.log")).read_text().strip()
    for out in chain["base_outs"]:
        (product,) = (out / "science").glob("*_base.fits")
        meta = json.loads(product.with_name(product.name + ".meta.json").read_text())
        rms = meta["quality_metrics"]["baseline_rms_k"]
        noise = fits.getval(product, "TRUNOISE")
        # radiometer noise, plus at most the (<= 1 x noise) ripple in quadrature
        assert 0.8 * noise < rms < 1.45 * noise, (rms, noise)
    for out in chain["cal_outs"]:
        header = fits.getheader(next((out / "science").glob("*_cal.fits")))
        assert header["TRX"] == pytest.approx(header["TRUTRX"], rel=0.01)


def _axis_values(header, axis: int, n: int) -> np.ndarray:
    """Values of WCS axis ``axis`` (1-based) at pixels 1..n, in the header's own CUNIT."""
    pixels = np.arange(1, n + 1)
    return header[f"CRVAL{axis}"] + (pixels - header[f"CRPIX{axis}"]) * header[f"CDELT{axis}"]


def test_wcs_has_units_and_they_are_consistent(chain: dict[str, Any]) -> None:
    """Every WCS axis states its CUNIT, and the values are in it: converted by CUNIT, the
    spectral axis of every product is the generator's true velocity axis, the pixel size
    is the gridding's, and BUNIT parses to the quantity each map holds."""
    import astropy.units as u
    from astropy.io import fits
    from astropy.wcs import WCS

    truth = chain["truth"]
    true_kms = truth["center_kms"] + (np.arange(CHANNELS) - truth["line_channel"]) * truth[
        "velocity_resolution_kms"]
    spectra_files = [next((o / "science").glob("*.fits")) for o in
                     (*chain["cal_outs"], *chain["base_outs"])]
    for path in spectra_files:
        header = fits.getheader(path, "SPECTRA")
        assert header["CTYPE1"] == "VRAD" and header["SPECSYS"] == "LSRK"
        unit = u.Unit(header["CUNIT1"], format="fits")
        velocity = (_axis_values(header, 1, CHANNELS) * unit).to_value(u.km / u.s)
        np.testing.assert_allclose(velocity, true_kms, rtol=0, atol=1e-6)
        assert u.Unit(header["BUNIT"], format="fits") == u.K
        assert "CUNIT1" not in fits.getheader(path, 0)  # the axis lives on SPECTRA only

    grid = chain["grid_out"]
    cube = fits.getheader(next((grid / "science").glob("*_cube.fits")))
    mom0 = fits.getheader(next((grid / "science").glob("*_mom0.fits")))
    for header, naxis in ((cube, 3), (mom0, 2)):
        for axis in range(1, naxis + 1):
            assert f"CUNIT{axis}" in header, (axis, repr(header))
            u.Unit(header[f"CUNIT{axis}"], format="fits")  # parses as a FITS unit
        assert WCS(header).world_axis_physical_types[:2] == ["pos.eq.ra", "pos.eq.dec"]
        pixel = chain["stats"]["pixel_arcsec"]
        for axis, sign in ((1, -1), (2, 1)):  # RA increases to the left
            step = header[f"CDELT{axis}"] * u.Unit(header[f"CUNIT{axis}"], format="fits")
            assert step.to_value(u.arcsec) == pytest.approx(sign * pixel, rel=1e-9)
    cube_kms = (_axis_values(cube, 3, CHANNELS) * u.Unit(cube["CUNIT3"], format="fits")
                ).to_value(u.km / u.s)
    np.testing.assert_allclose(cube_kms, true_kms, rtol=0, atol=1e-6)
    assert WCS(cube).world_axis_physical_types[2] == "spect.dopplerVeloc.radio"
    assert cube["RESTFRQ"] == pytest.approx(fits.getheader(spectra_files[0], "SPECTRA")[
        "RESTFRQ"])
    assert u.Unit(cube["BUNIT"], format="fits") == u.K
    assert u.Unit(mom0["BUNIT"], format="fits") == u.K * u.km / u.s


def test_velocity_axis_follows_cunit_not_an_assumed_km_per_s() -> None:
    """The same axis written in km/s (by hand) and in m/s (by WCS.to_header) reads alike."""
    import astropy.units as u
    from astropy.io import fits
    from chai_reduce.spectra import spectral_from_header, spectral_wcs, velocity_axis

    by_hand = fits.Header({"CTYPE1": "VRAD", "CUNIT1": "km/s", "CRPIX1": 1.0, "CRVAL1": -40.0,
                           "CDELT1": 0.25, "RESTFRQ": 461.04e9, "SPECSYS": "LSRK"})
    by_wcs = spectral_wcs(-40.0 * u.km / u.s, 250.0 * u.m / u.s, 461.04 * u.GHz).to_header()
    assert by_wcs["CUNIT1"] == "m/s" and by_wcs["CRVAL1"] == -40000.0
    expected = (-40.0 + 0.25 * np.arange(8)) * u.km / u.s
    for header in (by_hand, by_wcs):
        got = velocity_axis(spectral_from_header(header), 8)
        assert u.allclose(got, expected, atol=1e-9 * u.km / u.s)
    with pytest.raises(ValueError, match="not a radio velocity"):
        spectral_from_header(fits.Header({"CTYPE1": "FREQ", "CUNIT1": "Hz"}))


def _all_fits(chain: dict[str, Any]) -> list[Path]:
    outs = [*chain["cal_outs"], *chain["base_outs"], chain["grid_out"]]
    return sorted([*chain["archive"].rglob("*.fits"), *(p for o in outs
                                                         for p in o.rglob("*.fits"))])


def test_every_fits_file_carries_verified_checksums(chain: dict[str, Any]) -> None:
    from astropy.io import fits

    from ccat_assets.results.fits_integrity import fits_checksum_problems

    files = _all_fits(chain)
    assert len(files) == SCANS * 3 + SCANS * 2 + 2  # raw hot/cold/sky, cal, base, cube+mom0
    for path in files:
        with fits.open(path) as hdul:
            for hdu in hdul:
                assert "CHECKSUM" in hdu.header and "DATASUM" in hdu.header, (path, hdu.name)
        assert fits_checksum_problems(path) == [], path


def test_a_corrupted_data_byte_fails_the_integrity_check_clearly(
        chain: dict[str, Any], tmp_path: Path) -> None:
    from astropy.io import fits

    from ccat_assets.results.fits_integrity import fits_checksum_problems

    cube = tmp_path / "cube.fits"
    shutil.copyfile(next((chain["grid_out"] / "science").glob("*_cube.fits")), cube)
    with fits.open(cube) as hdul:
        offset = hdul[0].fileinfo()["datLoc"] + 1001
    raw = bytearray(cube.read_bytes())
    raw[offset] ^= 0x01
    cube.write_bytes(bytes(raw))
    assert "Datasum verification failed for HDU ('PRIMARY', 1): the data do not match " \
           "their DATASUM card" in fits_checksum_problems(cube)


def test_programs_write_only_to_output_dir(chain: dict[str, Any]) -> None:
    assert chain["sandbox"].leftovers() == []
    assert tree_state(chain["archive"]) == chain["archive_before"]
    allowed = {"science", "qa", "plots", "statistics", "logs"}
    for out in [*chain["cal_outs"], *chain["base_outs"], chain["grid_out"]]:
        assert {p.name for p in out.iterdir()} <= allowed, out


def test_no_inputs_fails_clearly(tmp_path: Path) -> None:
    steps = {"chai-calibration": "calibrate", "chai-baseline": "baseline",
             "chai-gridding": "grid"}
    jobs = [(manifest(step, {"executed_obs_unit": "none"}, tmp_path / step), tmp_path / step)
            for step in steps.values()]
    results = run_steps(Sandbox(tmp_path / "sandbox"), jobs)
    for program, result in zip(steps, results, strict=True):
        assert result.returncode != 0, program
        assert f"{program}: error: manifest lists no" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_second_night_gets_new_names(tmp_path: Path) -> None:
    from chai_reduce import generate

    common = ["--out", str(tmp_path), "--sources", "NGC253,ORION", "--lines", "CO43,CII",
              "--scans-per-target", "2", "--positions-per-scan", "3", "--channels", "64"]
    names, truths = [], []
    for night in ("2026-03-12", "2026-03-13"):
        assert generate.main([*common, "--night", night]) == 0
        ingest = yaml.safe_load((tmp_path / night / "ingest.yaml").read_text())
        base = Path(ingest["locations"][0]["base_path"])
        for package in ingest["raw_data_packages"]:
            files = package["files"]
            for f in files:
                path = base / package["path"] / f["path"]
                assert (sha256(path), path.stat().st_size) == (f["checksum"], f["size_bytes"])
            lines = "".join(sorted(f"{f['path']} {f['checksum']}\n" for f in files))
            assert package["checksum"] == sha256(lines.encode())
        names.append({p["name"] for p in ingest["raw_data_packages"]}
                     | {s["name"] for s in ingest["executed_obs_units"]})
        truths.append(json.loads((tmp_path / night / "truth.json").read_text()))
    assert len(names[0]) == len(names[1]) == 2 * 2 * 2 * 2
    assert names[0].isdisjoint(names[1])
    assert truths[0]["seed"] != truths[1]["seed"]
    sky = ("peak_k", "center_kms", "x0_arcsec", "y0_arcsec")
    for key, target in truths[0]["targets"].items():
        assert {k: target[k] for k in sky} == {k: truths[1]["targets"][key][k] for k in sky}
