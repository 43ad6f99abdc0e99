"""Targets at any z: the image between two recorded planes, and where it comes from.

A Deep-Z target at ``z_input + DPM`` is interpolated linearly between the two
recorded planes that bracket it, pixel by pixel (`target_for_dpm`); this is exact at
recorded planes and a good approximation when the z step is finer than the depth of
field. The planes are the stack's own, its noise-free twin's (`ZStack.clean`) or, for
cross-modality Deep-Z, those of a registered stack from another detector, which must
match the input stack plane for plane (`check_target_stacks`).

The rules on which stacks may be used together live here too, once, for training
pairs and evaluation alike: the z tolerance of "inside the stack" and the pixel-size
tolerance of "one microscope".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import ArrayLike

    from deepz_live.inference._zstack import ZStack

__all__ = [
    "Z_TOLERANCE_UM",
    "check_same_pixel_size",
    "check_target_stacks",
    "plane_at",
    "target_for_dpm",
]

#: Positions within this many µm outside the stack count as inside: they come from
#: float rounding of z_input + dz, not from a DPM that really leaves the stack.
Z_TOLERANCE_UM = 1e-6

# Pixel sizes of stacks used to train one model may differ by this much (relative).
_PIXEL_TOLERANCE = 0.01


def target_for_dpm(
    stack: ZStack,
    plane_index: int,
    dpm_um: ArrayLike,
    y0: int,
    x0: int,
    *,
    clean: bool = False,
) -> np.ndarray:
    """The image at ``z_um[plane_index] + dpm`` over a crop, interpolated in z.

    Each pixel is interpolated linearly between the two recorded planes that
    bracket its own z, at that pixel.

    Parameters
    ----------
    stack : ZStack
        Source stack.
    plane_index : int
        Input plane; the DPM is relative to its z.
    dpm_um : array_like
        ``(h, w)`` refocusing distance per pixel, µm.
    y0, x0 : int
        Top-left corner of the crop in the stack's field.
    clean : bool
        Interpolate the stack's noise-free twin instead (where it has one).

    Returns
    -------
    numpy.ndarray
        ``(h, w)`` float32 target in the stack's intensity units.

    Raises
    ------
    ValueError
        The crop leaves the field, the plane index is out of range, or some
        ``z_um[plane_index] + dpm`` lies outside the stack's z range.
    """
    dpm = np.asarray(dpm_um, dtype=np.float64)
    if dpm.ndim != 2:
        raise ValueError(f"dpm_um must be 2-D (h, w), got shape {dpm.shape}")
    n_z, height, width = stack.shape
    h, w = dpm.shape
    if not 0 <= plane_index < n_z:
        raise ValueError(f"plane_index {plane_index} outside 0..{n_z - 1}")
    if y0 < 0 or x0 < 0 or y0 + h > height or x0 + w > width:
        raise ValueError(
            f"crop {h}×{w} at (y0={y0}, x0={x0}) leaves the {height}×{width} field "
            f"of {stack.source}"
        )
    z_planes = stack.z_um
    z = z_planes[plane_index] + dpm
    low, high = z_planes[0], z_planes[-1]
    if not np.all(np.isfinite(z)) or (
        z.min() < low - Z_TOLERANCE_UM or z.max() > high + Z_TOLERANCE_UM
    ):
        raise ValueError(
            f"the DPM reaches z = {np.nanmin(z):.4g}..{np.nanmax(z):.4g} µm, outside "
            f"the {low:.4g}..{high:.4g} µm recorded in {stack.source}"
        )
    z = np.clip(z, low, high)
    below = np.clip(np.searchsorted(z_planes, z, side="right") - 1, 0, n_z - 2)
    weight = (z - z_planes[below]) / (z_planes[below + 1] - z_planes[below])
    rows = np.arange(y0, y0 + h)[:, np.newaxis]
    cols = np.arange(x0, x0 + w)[np.newaxis, :]
    data = _target_data(stack, clean)
    lower = data[below, rows, cols]
    upper = data[below + 1, rows, cols]
    return ((1.0 - weight) * lower + weight * upper).astype(np.float32)


def plane_at(
    stack: ZStack, z: float, window: tuple[slice, slice], *, clean: bool = False
) -> np.ndarray:
    """The stack's image at one z (linear between the two bracketing planes).

    `target_for_dpm` with a constant DPM gives the same image; this scalar case
    slices whole planes instead of indexing pixel by pixel, which matters for
    stack batches (one target per output plane, 41 per input).
    """
    z_planes = stack.z_um
    z = min(max(z, z_planes[0]), z_planes[-1])
    below = int(np.searchsorted(z_planes, z, side="right")) - 1
    below = min(max(below, 0), len(z_planes) - 2)
    weight = (z - z_planes[below]) / (z_planes[below + 1] - z_planes[below])
    data = _target_data(stack, clean)
    lower = data[below][window].astype(np.float32)
    if weight < 1e-9:
        return lower
    upper = data[below + 1][window].astype(np.float32)
    return lower + np.float32(weight) * (upper - lower)


def _target_data(stack: ZStack, clean: bool) -> np.ndarray:
    """The planes targets come from: the noise-free twin if asked and present."""
    return stack.clean if clean and stack.clean is not None else stack.data


def check_target_stacks(
    stacks: Sequence[ZStack], target_stacks: Sequence[ZStack]
) -> list[ZStack]:
    """Target stacks that pair one to one with ``stacks``: same shape, same z.

    Raises
    ------
    ValueError
        Another number of stacks, or a pair that differs in shape, plane positions
        or pixel size (not registered).
    """
    targets = list(target_stacks)
    if len(targets) != len(stacks):
        raise ValueError(
            f"{len(targets)} target stacks for {len(stacks)} input stacks: give one "
            "registered target stack per input stack"
        )
    for stack, target in zip(stacks, targets, strict=True):
        if target.shape != stack.shape or not np.allclose(
            target.z_um, stack.z_um, atol=Z_TOLERANCE_UM
        ):
            raise ValueError(
                f"target {target.source} {target.shape} does not match input "
                f"{stack.source} {stack.shape} plane for plane; register the pair "
                "first (deepz_live.inference.register_pair)"
            )
        if not np.allclose(target.pixel_um, stack.pixel_um, rtol=_PIXEL_TOLERANCE):
            raise ValueError(
                f"target {target.source} has {target.pixel_um} µm pixels, input "
                f"{stack.source} has {stack.pixel_um}: register the pair first"
            )
    return targets


def check_same_pixel_size(stacks: Sequence[ZStack]) -> None:
    """Stacks that train one model share one pixel size.

    Raises
    ------
    ValueError
        A stack whose pixel size differs from the first one's.
    """
    reference = np.asarray(stacks[0].pixel_um)
    for stack in stacks[1:]:
        if not np.allclose(stack.pixel_um, reference, rtol=_PIXEL_TOLERANCE):
            raise ValueError(
                f"{stack.source} has {_pixel_text(stack.pixel_um)} pixels but "
                f"{stacks[0].source} has {_pixel_text(reference)}: a Deep-Z model "
                "serves one pixel size; resample the stacks or train separate models"
            )


def _pixel_text(pixel_um: Any) -> str:
    """``0.325 × 0.325 µm`` (y × x), without float noise."""
    y, x = (float(v) for v in pixel_um)
    return f"{y:.4g} × {x:.4g} µm"
