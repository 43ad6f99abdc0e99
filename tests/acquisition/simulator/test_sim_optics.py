"""The simulator's optics against theory and an independent PSF implementation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepz_live.acquisition.simulator import Optics, VectorialPSF
from deepz_live.acquisition.simulator._optics import pixelate_profile

psfmodels = pytest.importorskip("psfmodels")

DEFAULT = Optics()


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _psfmodels_stack(stage_z: np.ndarray, depth: float, nx: int) -> np.ndarray:
    o = DEFAULT
    params = {
        "NA": o.na, "ni": o.n_immersion, "ni0": o.n_immersion, "ns": o.n_sample,
        "ng": o.n_coverslip, "ng0": o.n_coverslip, "tg": 170, "tg0": 170,
        "ti0": 150, "sf": 3,
    }  # fmt: skip
    # psfmodels' axial coordinate puts the paraxial focus of depth zp at zv = zp
    zv = stage_z + depth * (1 - o.n_immersion / o.n_sample)
    return psfmodels.vectorial_psf(
        zv, nx=nx, dxy=o.sample_pixel_um, pz=depth, wvl=o.wavelength_um,
        params=params, normalize=False,
    )  # fmt: skip


def test_single_bead_zstack_matches_psfmodels_vectorial(sim_core, bench) -> None:
    """The camera's noise-free bead z-stack vs psfmodels (Aguet's vectorial model)."""
    sim_core.setProperty("Specimen", "Kind", "single-bead")
    focus = float(sim_core.getProperty("Specimen", "FocusZ"))
    assert focus == pytest.approx(0.0, abs=0.02)  # a bead on the coverslip
    stage = focus + np.arange(-5, 5.01, 0.5)
    mine = np.stack([bench.clean_photons(z_um=z)[206:307, 206:307] for z in stage])
    ref = _psfmodels_stack(stage, 0.0, 101)
    scores = [_ncc(a, b) for a, b in zip(mine, ref, strict=True)]
    assert np.mean(scores) >= 0.97
    assert min(scores) >= 0.95


@pytest.mark.parametrize("depth", [5.0, 15.0])
def test_deep_bead_matches_psfmodels_including_aberration(depth: float) -> None:
    """Index mismatch: shapes agree with psfmodels at depth, through focus."""
    psf = VectorialPSF(DEFAULT)
    focus = psf.best_focus_stage_um(depth)
    stage = focus + np.arange(-5, 5.01, 1.0)
    profiles = psf.profiles(np.full(stage.size, depth), stage)
    mine = np.stack(
        [
            pixelate_profile(psf.r_um, p, (50, 50), 50, DEFAULT.sample_pixel_um, 3)[0]
            for p in profiles
        ]
    )
    ref = _psfmodels_stack(stage, depth, 101)
    assert np.mean([_ncc(a, b) for a, b in zip(mine, ref, strict=True)]) >= 0.97


def test_focal_shift_between_marginal_and_paraxial_focus() -> None:
    """A dry objective focusing into water: the stage moves less than the depth."""
    psf = VectorialPSF(DEFAULT)
    depth = 10.0
    o = DEFAULT
    paraxial = depth * o.n_immersion / o.n_sample
    sin_i = o.na / o.n_immersion
    sin_s = o.na / o.n_sample
    tan_i = sin_i / np.sqrt(1 - sin_i**2)
    tan_s = sin_s / np.sqrt(1 - sin_s**2)
    marginal = depth * tan_s / tan_i
    assert marginal < psf.best_focus_stage_um(depth) < paraxial


def test_psf_is_asymmetric_about_focus_at_depth_and_symmetric_at_coverslip() -> None:
    psf = VectorialPSF(DEFAULT)
    ratios = {}
    for depth in (0.0, 10.0):
        f = psf.best_focus_stage_um(depth)
        peak = psf.profiles(np.full(2, depth), np.array([f - 3, f + 3]))[:, 0]
        ratios[depth] = peak[0] / peak[1]
    assert ratios[0.0] == pytest.approx(1.0, abs=0.02)
    assert abs(ratios[10.0] - 1.0) > 0.15


def test_in_focus_width_matches_diffraction_limit() -> None:
    """FWHM of the in-focus widefield PSF ≈ 0.51 λ/NA (Airy disc)."""
    psf = VectorialPSF(DEFAULT)
    prof = psf.profiles(np.array([0.0]), np.array([0.0]))[0]
    half = prof[0] / 2
    r_half = np.interp(-half, -prof[:200], psf.r_um[:200])
    fwhm = 2 * r_half
    airy = 0.51 * DEFAULT.wavelength_um / DEFAULT.na
    assert fwhm == pytest.approx(airy, rel=0.08)


def test_energy_per_plane_is_conserved_through_focus(sim_core, bench) -> None:
    """Widefield keeps out-of-focus light: frame totals within 10 % over ±10 µm."""
    sim_core.setProperty("Specimen", "Kind", "single-bead")
    totals = np.array(
        [bench.clean_photons(z_um=z).sum() for z in np.arange(-10, 10.1, 2)]
    )
    assert totals.max() / totals.min() < 1.10
    # and nearly all of the light the objective collects reaches the frame
    led = bench.led
    expected = (
        30_000
        * 315.6  # photons / s / fluorophore / (W/cm²), EGFP-like
        * led.irradiance()
        * sim_core.getExposure()
        / 1000
        * DEFAULT.collection_efficiency
    )
    assert totals.mean() == pytest.approx(expected, rel=0.03)


def test_optics_reject_impossible_na() -> None:
    with pytest.raises(ValueError, match="immersion index"):
        Optics(na=1.2, n_immersion=1.0)


REAL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "real"


def test_defocus_resembles_a_measured_bead() -> None:
    """Against a measured widefield PSF (NA 0.85 air, 520 nm; pyotf, Apache-2.0).

    A real objective adds residual aberrations and noise, so agreement is high near
    focus (0.98 measured) and lower but clear away from it (≥ 0.84 measured).
    """
    import tifffile
    from scipy import ndimage

    path = REAL / "bead_widefield_na0.85_520nm_z300nm_xy130nm.tif"
    if not path.exists():
        pytest.skip(f"shared real data not found at {path}")
    data = tifffile.imread(path).astype(float) - 135  # camera offset ≈ 135
    peak_plane = int(np.argmax(data.max(axis=(1, 2))))
    focal = data[peak_plane]
    cy, cx = ndimage.center_of_mass(
        np.clip(focal, 0, None) * (focal > 0.2 * focal.max())
    )
    half = 40
    r0, c0 = round(cy), round(cx)
    crop = data[:, r0 - half : r0 + half + 1, c0 - half : c0 + half + 1]
    optics = Optics(
        na=0.85, magnification=50, wavelength_um=0.52, n_immersion=1.0, n_sample=1.0
    )  # 6.5 µm / 50 = 0.13 µm pixels
    psf = VectorialPSF(optics)
    dz = (np.arange(data.shape[0]) - peak_plane) * 0.3
    profiles = psf.profiles(np.zeros(dz.size), -dz)
    centre = (half + cy - r0, half + cx - c0)
    model = [pixelate_profile(psf.r_um, p, centre, half, 0.13, 3)[0] for p in profiles]
    scores = np.array([_ncc(a, b) for a, b in zip(model, crop, strict=True)])
    assert scores[np.abs(dz) <= 0.6].mean() >= 0.95
    assert scores.min() >= 0.8
