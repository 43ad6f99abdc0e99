"""Rigid (translation-only) registration of two z-stacks of the same sample.

Cross-modality Deep-Z (widefield in, confocal out) learns a pixel-wise mapping, so the
two stacks must overlay exactly: a few pixels of offset between two detectors of one
microscope become blur the network is asked to reproduce. `estimate_shift` finds the
3-D offset by phase cross-correlation (a coarse integer peak, then an upsampled-DFT
refinement around it, after Guizar-Sicairos et al., Opt. Lett. 33, 156, 2008), and
`register_pair` applies it and keeps only the voxels both stacks really recorded.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from deepz_live.inference._zstack import ZStack

__all__ = ["estimate_shift", "register_pair", "valid_slices"]

# Keeps the phase normalization finite at frequencies where both spectra vanish.
_EPS = 1e-12
# Shifts within this of a whole pixel count as whole: float noise in a shift must not
# cost a row of valid pixels when cropping.
_WHOLE_PIXEL_TOLERANCE = 1e-6
# Relative pixel-size and plane-spacing tolerance for "the same voxel grid".
_GRID_TOLERANCE = 0.01
# Correlation passes of `estimate_shift` (the first, then refinements of the rest).
_MAX_PASSES = 4


def estimate_shift(
    reference: ZStack, moving: ZStack, *, upsample: int = 10
) -> tuple[float, float, float]:
    """The translation that brings ``moving`` onto ``reference``, sub-pixel.

    Both stacks have their means removed and are tapered to zero at their borders
    (Hann window), then the peak of their normalized (phase)
    cross-correlation is found on the integer grid and refined on a grid
    ``1/upsample`` pixels fine within ±1 pixel of it, by evaluating the inverse DFT
    only there (no zero-padded FFT of the whole volume). The estimate is applied and
    the remainder measured again, which removes the window's pull towards zero.

    Parameters
    ----------
    reference, moving : ZStack
        Stacks of the same shape and voxel grid.
    upsample : int
        Sub-pixel resolution of the result is ``1/upsample`` pixel (1: integers).

    Returns
    -------
    dz, dy, dx : float
        Shift in planes and pixels such that
        ``scipy.ndimage.shift(moving.data, (dz, dy, dx))`` overlays ``reference``,
        i.e. ``reference[p] ≈ moving[p - shift]``.

    Raises
    ------
    ValueError
        Different shapes or voxel grids, or ``upsample < 1``.
    """
    _check_same_grid(reference, moving)
    if int(upsample) != upsample or upsample < 1:
        raise ValueError(f"upsample must be a positive integer, got {upsample}")
    upsample = int(upsample)
    ref = reference.data.astype(np.float64)
    mov = moving.data.astype(np.float64)
    shift = _correlation_peak(ref, mov, upsample)
    # The window weights both stacks alike, so content off the centre pulls the
    # peak towards zero shift by a fraction of the shift. Measuring again what is
    # left after applying the estimate removes that bias (it shrinks with the
    # residual), typically in one or two passes.
    for _ in range(_MAX_PASSES - 1):
        if upsample == 1 or not np.any(shift):
            break
        # cubic spline here: this copy only feeds the estimate and must keep the
        # fine structure the sub-pixel peak depends on
        moved = ndimage.shift(mov, shift, order=3, mode="nearest")
        residual = _correlation_peak(ref, moved, upsample)
        shift = shift + residual
        if np.max(np.abs(residual)) < 0.5 / upsample:
            break
    return float(shift[0]), float(shift[1]), float(shift[2])


def _correlation_peak(ref: np.ndarray, mov: np.ndarray, upsample: int) -> np.ndarray:
    """One pass of windowed phase correlation: the shift of ``mov`` onto ``ref``."""
    # The mean would put a large peak at zero shift (DC term) that says nothing about
    # where the structure is.
    ref = ref - ref.mean()
    mov = mov - mov.mean()
    # The FFT treats each stack as periodic: its box edges are steps at the same place
    # in both stacks, which correlate best at zero shift whatever the content does.
    # A Hann taper removes those steps.
    window = _hann(ref.shape)
    spectrum = np.fft.fftn(ref * window) * np.conj(np.fft.fftn(mov * window))
    # Phase correlation: only the phase difference carries the shift; dropping the
    # amplitude makes two detectors with different blur and brightness comparable.
    spectrum /= np.maximum(np.abs(spectrum), _EPS)
    correlation = np.fft.ifftn(spectrum).real
    peak = np.unravel_index(int(np.argmax(correlation)), correlation.shape)
    coarse = np.array(
        [
            p - n if p > n // 2 else p
            for p, n in zip(peak, correlation.shape, strict=True)
        ],
        dtype=np.float64,
    )
    if upsample == 1:
        return coarse
    return _refine_peak(spectrum, coarse, upsample)


def _refine_peak(spectrum: np.ndarray, coarse: np.ndarray, upsample: int) -> np.ndarray:
    """Peak of the inverse DFT of ``spectrum`` on a fine grid around ``coarse``.

    The cross-correlation at any (non-integer) shift ``r`` is
    ``sum_k S(k) exp(2πi k·r / N)``; it is evaluated on ``(2·upsample + 1)`` points
    per axis spanning ±1 pixel, one axis at a time (three small matrix products).
    """
    n_points = 2 * upsample + 1
    offsets = (np.arange(n_points) - upsample) / upsample
    values = spectrum
    for axis, size in enumerate(spectrum.shape):
        positions = coarse[axis] + offsets  # (n_points,)
        freqs = np.fft.fftfreq(size)  # cycles per sample, signed
        kernel = np.exp(2j * np.pi * positions[:, np.newaxis] * freqs[np.newaxis, :])
        # contract this axis of `values` with the kernel; the new axis goes last,
        # so after three passes the axes are back in (z, y, x) order
        values = np.tensordot(values, kernel, axes=([0], [1]))
    best = np.unravel_index(int(np.argmax(values.real)), values.shape)
    return coarse + offsets[np.asarray(best)]


def _hann(shape: tuple[int, ...]) -> np.ndarray:
    """Separable Hann window over all axes."""
    window = np.ones(shape)
    for axis, n in enumerate(shape):
        profile = np.hanning(n) if n > 2 else np.ones(n)
        window = window * profile.reshape(
            [n if a == axis else 1 for a in range(len(shape))]
        )
    return window


def valid_slices(shape: tuple[int, ...], shift: tuple[float, ...]) -> tuple[slice, ...]:
    """Where a stack shifted by ``shift`` (linear interpolation) holds real data.

    Parameters
    ----------
    shape : tuple of int
        Shape of the stack.
    shift : tuple of float
        As returned by `estimate_shift`.

    Returns
    -------
    tuple of slice
        Per axis, the indices ``p`` whose source position ``p - shift`` lies within
        the recorded range ``[0, n - 1]`` (no extrapolated border).
    """
    slices = []
    for n, s in zip(shape, shift, strict=True):
        start = math.ceil(s - _WHOLE_PIXEL_TOLERANCE)
        stop = math.floor(n - 1 + s + _WHOLE_PIXEL_TOLERANCE) + 1
        slices.append(slice(max(0, start), min(n, stop)))
    return tuple(slices)


def register_pair(
    reference: ZStack, moving: ZStack, *, upsample: int = 10
) -> tuple[ZStack, ZStack, tuple[float, float, float]]:
    """Shift ``moving`` onto ``reference`` and crop both to their common region.

    Parameters
    ----------
    reference : ZStack
        Stays where it is (for Deep-Z: the network's input modality).
    moving : ZStack
        Resampled by linear interpolation at the shift `estimate_shift` finds.
    upsample : int
        Sub-pixel resolution of the shift (``1/upsample`` pixel).

    Returns
    -------
    reference, moving : ZStack
        Both cropped to the voxels valid in both, with the reference's plane
        positions and pixel size; ``moving``'s source gets a ``[registered]``
        suffix. Each keeps its own optics and camera offset.
    shift : tuple of float
        ``(dz, dy, dx)`` in planes and pixels (see `estimate_shift`).

    Raises
    ------
    ValueError
        Different shapes or voxel grids, or a shift so large that fewer than 2
        planes or 1 pixel per axis would remain.
    """
    shift = estimate_shift(reference, moving, upsample=upsample)
    # order=1: linear interpolation, which does not ring (no negative intensities)
    moved = ndimage.shift(moving.data, shift, order=1, mode="nearest")
    region = valid_slices(reference.shape, shift)
    sizes = [s.stop - s.start for s in region]
    if sizes[0] < 2 or min(sizes[1:]) < 1:
        raise ValueError(
            f"{moving.source} is offset by {tuple(round(v, 2) for v in shift)} "
            f"(planes, pixels) from {reference.source}: too far for the two to "
            "overlap; are they images of the same field?"
        )
    z_um = reference.z_um[region[0]]
    # ground truth is cut with the reference; the moved stack's would need moving too
    cropped_reference = replace(
        reference,
        data=reference.data[region],
        z_um=z_um,
        clean=None if reference.clean is None else reference.clean[region],
        objects=None,
    )
    cropped_moving = replace(
        moving,
        data=moved[region],
        z_um=z_um,
        pixel_um=reference.pixel_um,
        source=f"{moving.source}[registered]",
        clean=None,
        objects=None,
    )
    return cropped_reference, cropped_moving, shift


def _check_same_grid(reference: ZStack, moving: ZStack) -> None:
    if reference.shape != moving.shape:
        raise ValueError(
            f"cannot register {moving.source} {moving.shape} onto "
            f"{reference.source} {reference.shape}: the stacks must have the same "
            "shape (planes, rows, columns)"
        )
    if not np.allclose(
        reference.voxel_um, moving.voxel_um, rtol=_GRID_TOLERANCE, atol=0.0
    ):
        raise ValueError(
            f"{moving.source} has voxels {moving.voxel_um} µm but "
            f"{reference.source} has {reference.voxel_um} µm: resample one onto the "
            "other's grid before registering"
        )
