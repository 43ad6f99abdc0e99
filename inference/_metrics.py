"""Image-quality metrics: PSNR, SSIM and NRMSE (numpy), and a differentiable SSIM.

The numpy metrics compute in float64 so that 16-bit camera counts and their squares
lose nothing. They treat the last two axes as the image; leading axes (batch,
channels, planes) are averaged over.

SSIM follows Wang et al., IEEE Trans. Image Process. 13, 600 (2004): a Gaussian
window (σ = 1.5 px, truncated at 3.5 σ, i.e. 11×11 taps), K1 = 0.01, K2 = 0.03,
population (not sample) variances, and the mean over the positions where the window
fits entirely inside the image ("valid" region: no invented border pixels). This is
what scikit-image returns with ``gaussian_weights=True, use_sample_covariance=False``.
:func:`ssim_torch` computes the same number in torch for use in a training loss.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    import torch
    from numpy.typing import ArrayLike

_K1 = 0.01
_K2 = 0.03
# Window truncation in units of σ (scikit-image and scipy use the same): 11 taps
# at σ = 1.5, Wang et al.'s window.
_TRUNCATE = 3.5


def _as_pair(pred: ArrayLike, target: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    pred_array = np.asarray(pred, dtype=np.float64)
    target_array = np.asarray(target, dtype=np.float64)
    if pred_array.shape != target_array.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {pred_array.shape} "
            f"and {target_array.shape}"
        )
    if pred_array.size == 0:
        raise ValueError("cannot compare empty images")
    return pred_array, target_array


def _check_data_range(data_range: float) -> float:
    value = float(data_range)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"data_range must be a positive number, got {data_range!r}")
    return value


def psnr(pred: ArrayLike, target: ArrayLike, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB.

    Parameters
    ----------
    pred, target : array_like
        Images of the same shape.
    data_range : float
        Dynamic range of the data (e.g. 1.0 for images in [0, 1], 65535 for 16-bit
        counts); the "peak" of PSNR.

    Returns
    -------
    float
        ``10 · log10(data_range² / MSE)``; ``inf`` for identical images.
    """
    pred_array, target_array = _as_pair(pred, target)
    peak = _check_data_range(data_range)
    mse = float(np.mean((pred_array - target_array) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


def nrmse(pred: ArrayLike, target: ArrayLike) -> float:
    """Root-mean-square error normalised by the target's range (max − min).

    Raises
    ------
    ValueError
        If the target is constant (its range is zero, so the ratio is undefined).
    """
    pred_array, target_array = _as_pair(pred, target)
    span = float(target_array.max() - target_array.min())
    if span == 0.0:
        raise ValueError("target is constant: its range is zero, NRMSE is undefined")
    return math.sqrt(float(np.mean((pred_array - target_array) ** 2))) / span


def gaussian_window_1d(sigma: float) -> np.ndarray:
    """Return the normalised 1-D Gaussian window used by :func:`ssim`.

    Its radius is ``int(3.5 · sigma + 0.5)`` taps (11 taps for σ = 1.5).
    """
    if not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    radius = int(_TRUNCATE * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    window = np.exp(-0.5 * (offsets / sigma) ** 2)
    return window / window.sum()


def _check_window_fits(shape: tuple[int, ...], taps: int) -> None:
    if len(shape) < 2:
        raise ValueError(f"SSIM needs images of at least 2 dimensions, got {shape}")
    if shape[-2] < taps or shape[-1] < taps:
        raise ValueError(
            f"images of {shape[-2]}×{shape[-1]} pixels are smaller than the "
            f"{taps}×{taps} SSIM window; use a smaller sigma or larger images"
        )


def ssim(
    pred: ArrayLike, target: ArrayLike, data_range: float, *, sigma: float = 1.5
) -> float:
    """Mean structural similarity (Wang et al. 2004, Gaussian window).

    Parameters
    ----------
    pred, target : array_like
        Images of the same shape, at least 2-D; the last two axes are the image.
    data_range : float
        Dynamic range of the data; sets the stabilising constants
        ``C1 = (0.01 · data_range)²`` and ``C2 = (0.03 · data_range)²``.
    sigma : float
        Standard deviation of the Gaussian window in pixels.

    Returns
    -------
    float
        The SSIM map averaged over the valid region and all leading axes; 1 for
        identical images.
    """
    pred_array, target_array = _as_pair(pred, target)
    peak = _check_data_range(data_range)
    window = gaussian_window_1d(sigma)
    _check_window_fits(pred_array.shape, window.size)
    radius = window.size // 2

    def local_mean(image: np.ndarray) -> np.ndarray:
        # Separable filtering, then the border (where the window would reach
        # outside the image) is cut away: the "valid" region of Wang et al.
        for axis in (-2, -1):
            image = ndimage.correlate1d(image, window, axis=axis, mode="constant")
        return image[..., radius:-radius, radius:-radius]

    mu_pred = local_mean(pred_array)
    mu_target = local_mean(target_array)
    var_pred = local_mean(pred_array * pred_array) - mu_pred**2
    var_target = local_mean(target_array * target_array) - mu_target**2
    covariance = local_mean(pred_array * target_array) - mu_pred * mu_target
    c1 = (_K1 * peak) ** 2
    c2 = (_K2 * peak) ** 2
    ssim_map = ((2 * mu_pred * mu_target + c1) * (2 * covariance + c2)) / (
        (mu_pred**2 + mu_target**2 + c1) * (var_pred + var_target + c2)
    )
    return float(ssim_map.mean())


def ssim_torch(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Differentiable mean SSIM in torch, equal to :func:`ssim` up to rounding.

    Parameters
    ----------
    pred, target : torch.Tensor
        Tensors of the same shape, at least 2-D (typically ``(N, C, H, W)``); the
        last two axes are the image. Computed in their dtype and on their device.
    data_range : float
        Dynamic range of the data (see :func:`ssim`).
    sigma : float
        Standard deviation of the Gaussian window in pixels.

    Returns
    -------
    torch.Tensor
        A scalar: the mean SSIM over the valid region, the batch and the channels.
        Use ``1 - ssim_torch(...)`` as a loss.
    """
    import torch
    from torch.nn import functional

    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    peak = _check_data_range(data_range)
    window_np = gaussian_window_1d(sigma)
    _check_window_fits(tuple(pred.shape), window_np.size)
    height, width = pred.shape[-2], pred.shape[-1]
    # Scale to [0, 1]-sized values first: in float32 the variances E[x²] − E[x]²
    # of raw counts would cancel catastrophically. SSIM is invariant to the common
    # scaling when the constants scale with it, so C1, C2 use a unit range.
    x = pred.reshape(-1, 1, height, width) / peak
    y = target.reshape(-1, 1, height, width) / peak
    window = torch.as_tensor(window_np, dtype=pred.dtype, device=pred.device)
    taps = window.numel()
    column = window.reshape(1, 1, taps, 1)
    row = window.reshape(1, 1, 1, taps)

    def local_mean(image: torch.Tensor) -> torch.Tensor:
        # No padding: "valid" filtering, as in ssim().
        return functional.conv2d(functional.conv2d(image, column), row)

    mu_x = local_mean(x)
    mu_y = local_mean(y)
    var_x = local_mean(x * x) - mu_x * mu_x
    var_y = local_mean(y * y) - mu_y * mu_y
    covariance = local_mean(x * y) - mu_x * mu_y
    c1 = _K1**2
    c2 = _K2**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * covariance + c2)) / (
        (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    )
    return ssim_map.mean()
