"""Image metrics against closed forms, an independent SSIM and the torch SSIM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepz_live.inference import nrmse, psnr, ssim
from deepz_live.inference._metrics import gaussian_window_1d, ssim_torch


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.mark.parametrize(("error", "data_range"), [(0.1, 1.0), (-3.0, 65535.0)])
def test_psnr_of_a_constant_error(rng, error, data_range):
    target = rng.random((16, 20)) * data_range
    expected = 20 * math.log10(data_range / abs(error))
    assert psnr(target + error, target, data_range) == pytest.approx(
        expected, rel=1e-12
    )


def test_psnr_of_uint16_images_does_not_overflow():
    # In uint16 arithmetic 0 − 1000 wraps to 64536; the metric must not.
    target = np.full((4, 4), 1000, dtype=np.uint16)
    pred = np.zeros((4, 4), dtype=np.uint16)
    assert psnr(pred, target, 65535) == pytest.approx(20 * math.log10(65535 / 1000))


def test_identical_images(rng):
    image = rng.random((2, 24, 24))
    assert psnr(image, image, 1.0) == math.inf
    assert ssim(image, image, 1.0) == pytest.approx(1.0, abs=1e-12)
    assert nrmse(image, image) == 0.0


def test_nrmse(rng):
    target = rng.random((10, 10))
    target[0, 0], target[0, 1] = 0.0, 2.0  # range 2
    assert nrmse(target + 0.5, target) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="constant"):
        nrmse(target, np.ones_like(target))


def test_shape_and_range_errors(rng):
    image = rng.random((16, 16))
    with pytest.raises(ValueError, match="same shape"):
        psnr(image, image[:8], 1.0)
    with pytest.raises(ValueError, match="data_range"):
        ssim(image, image, 0.0)
    with pytest.raises(ValueError, match="smaller than the 11×11"):
        ssim(image[:10], image[:10], 1.0)


def test_gaussian_window():
    window = gaussian_window_1d(1.5)
    assert window.size == 11  # Wang et al.'s 11×11 window
    assert window.sum() == pytest.approx(1.0)
    assert window[5] / window[6] == pytest.approx(math.exp(0.5 / 1.5**2))


def test_ssim_of_hand_computed_case():
    """A 11×11 image has one valid window: SSIM is the formula with weighted moments."""
    x = np.zeros((11, 11))
    x[5, 5] = 1.0  # a point where the window peaks
    y = np.full((11, 11), 0.5)
    w = gaussian_window_1d(1.5)
    weight = w[5] ** 2
    mu_x, mu_y = weight, 0.5
    var_x, var_y, cov = weight - weight**2, 0.0, 0.0
    c1, c2 = 0.01**2, 0.03**2
    expected = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    expected /= (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    assert ssim(x, y, 1.0) == pytest.approx(expected, rel=1e-12)


def test_ssim_matches_scikit_image(rng):
    metrics = pytest.importorskip("skimage.metrics")
    target = rng.random((48, 40)) * 4000 + 100
    pred = target + rng.normal(0, 300, target.shape)
    reference = metrics.structural_similarity(
        pred,
        target,
        data_range=4000.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(pred, target, 4000.0) == pytest.approx(reference, abs=1e-10)


def test_ssim_averages_over_leading_axes(rng):
    a = rng.random((3, 20, 20))
    b = a + rng.normal(0, 0.2, a.shape)
    per_image = [ssim(a[i], b[i], 1.0) for i in range(3)]
    assert ssim(a, b, 1.0) == pytest.approx(np.mean(per_image), rel=1e-12)


def test_ssim_drops_with_noise(rng):
    target = rng.random((32, 32))
    scores = [
        ssim(target + rng.normal(0, s, target.shape), target, 1.0)
        for s in (0.01, 0.1, 0.5)
    ]
    assert scores[0] > scores[1] > scores[2]


@pytest.mark.parametrize("data_range", [1.0, 4095.0])
def test_torch_ssim_agrees_with_numpy(rng, data_range):
    target = rng.random((2, 3, 32, 28)) * data_range
    pred = target + rng.normal(0, 0.2 * data_range, target.shape)
    expected = ssim(pred, target, data_range)
    got = ssim_torch(
        torch.tensor(pred, dtype=torch.float32),
        torch.tensor(target, dtype=torch.float32),
        data_range,
    )
    assert got.shape == ()
    assert float(got) == pytest.approx(expected, abs=1e-4)


def test_torch_ssim_is_differentiable(rng):
    target = torch.tensor(rng.random((1, 1, 16, 16)))
    pred = (target + 0.3 * torch.randn_like(target)).requires_grad_(True)
    loss = 1 - ssim_torch(pred, target, 1.0)
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad.abs().sum() > 0
    # A small step against the gradient improves the similarity.
    with torch.no_grad():
        better = pred - 0.05 * pred.grad / pred.grad.abs().max()
        assert ssim_torch(better, target, 1.0) > ssim_torch(pred, target, 1.0)
