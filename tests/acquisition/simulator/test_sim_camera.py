"""The camera model follows EMVA 1288 photon transfer."""

from __future__ import annotations

import numpy as np
import pytest

from deepz_live.acquisition.simulator import CameraNoiseModel


@pytest.mark.parametrize("photons", [0.0, 5.0, 50.0, 2000.0])
@pytest.mark.parametrize("binning", [1, 2])
def test_mean_and_variance_follow_photon_transfer(photons: float, binning: int) -> None:
    cam = CameraNoiseModel()
    rng = np.random.default_rng(1)
    exposure = 0.05
    frame = cam.expose(np.full((512, 512), photons), exposure, rng, binning=binning)
    mean = cam.expected_adu(photons, exposure, binning=binning)
    var = cam.expected_variance_adu(photons, exposure, binning=binning)
    n = frame.size
    assert frame.dtype == np.uint16
    # sample mean within 5 standard errors, sample variance within 3 %
    assert frame.mean() == pytest.approx(mean, abs=5 * np.sqrt(var / n))
    assert frame.var() == pytest.approx(var, rel=0.03)


def test_photon_transfer_slope_is_the_gain() -> None:
    """Variance vs mean (dark-subtracted) has slope K: the EMVA gain measurement."""
    cam = CameraNoiseModel(gain_adu_per_e=1.7)
    rng = np.random.default_rng(2)
    levels = np.array([20.0, 100.0, 400.0, 1600.0])
    dark = cam.expose(np.zeros((256, 256)), 0.01, rng)
    means, variances = [], []
    for p in levels:
        f = cam.expose(np.full((256, 256), p), 0.01, rng).astype(float)
        means.append(f.mean() - dark.mean())
        variances.append(f.var() - dark.astype(float).var())
    slope = np.polyfit(means, variances, 1)[0]
    assert slope == pytest.approx(1.7, rel=0.03)


def test_saturation_clips_to_16_bit() -> None:
    cam = CameraNoiseModel()
    frame = cam.expose(np.full((8, 8), 1e7), 0.01, np.random.default_rng(0))
    assert frame.max() <= 65535
    # full well (30 000 e⁻) × K + offset is just below 65535; read noise follows the
    # well, so saturated pixels scatter by K·σ_read
    spread = 5 * cam.gain_adu_per_e * cam.read_noise_e
    assert frame.mean() == pytest.approx(30_000 * cam.gain_adu_per_e + 100, abs=spread)
