"""Digital propagation matrices (DPMs) drawn for Deep-Z training pairs.

A DPM is the refocusing distance per pixel (µm). Constant DPMs teach refocusing to
flat planes; tilted planes and paraboloids teach refocusing to surfaces (Wu et al.
2019). Every DPM drawn here stays within ``±PairConfig.dz_range_um`` and, added to
its input plane's z, within the recorded stack, so that each target can be
interpolated from recorded planes (`target_for_dpm`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from deepz_live.inference._pairs import PairConfig
    from deepz_live.inference._zstack import ZStack

__all__ = ["constant_dpm", "surface_dpm"]


def constant_dpm(
    config: PairConfig, stack: ZStack, rng: np.random.Generator
) -> tuple[int, np.ndarray]:
    """An input plane and a flat DPM that keeps its target inside range and stack."""
    plane = int(rng.integers(stack.shape[0]))
    z = stack.z_um
    limit = config.dz_range_um
    low, high = max(-limit, z[0] - z[plane]), min(limit, z[-1] - z[plane])
    dz = rng.uniform(low, high)
    return plane, np.full((config.crop, config.crop), dz, dtype=np.float64)


def surface_dpm(
    config: PairConfig, stack: ZStack, rng: np.random.Generator
) -> tuple[int, np.ndarray]:
    """An input plane and a tilted plane or a paraboloid, offset so that it fits."""
    crop = config.crop
    # crop coordinates spanning [-0.5, 0.5] in both directions
    axis = np.linspace(-0.5, 0.5, crop) if crop > 1 else np.zeros(1)
    v, u = np.meshgrid(axis, axis, indexing="ij")
    if rng.random() < 0.5:
        angle = rng.uniform(0.0, 2.0 * np.pi)
        direction = np.cos(angle) * u + np.sin(angle) * v
        amount = rng.uniform(0.0, config.max_tilt_um)
        # peak to peak of `direction` is |cos| + |sin|: scale it to `amount`
        norm = abs(np.cos(angle)) + abs(np.sin(angle))
        shape = amount * direction / norm
    else:
        cu, cv = rng.uniform(-0.25, 0.25, size=2)
        r2 = (u - cu) ** 2 + (v - cv) ** 2
        sag = rng.uniform(-config.max_curvature_um, config.max_curvature_um)
        shape = sag * r2 / max(float(r2.max()), 1e-12)
    z = stack.z_um
    room = min(2.0 * config.dz_range_um, z[-1] - z[0])
    span = float(np.ptp(shape))
    if span > room:
        shape *= room / span
    limit = config.dz_range_um
    plane_low = np.maximum(-limit, z[0] - z)  # allowed DPM values, per plane
    plane_high = np.minimum(limit, z[-1] - z)
    while True:
        lows = plane_low - shape.min()
        highs = plane_high - shape.max()
        fits = np.flatnonzero(highs >= lows)
        if fits.size:
            break
        # The surface fits the range and the stack, but not from any recorded
        # plane (coarse z steps): flatten it until it does; flat always fits.
        shape *= 0.5
    plane = int(fits[rng.integers(fits.size)])
    base = rng.uniform(lows[plane], highs[plane])
    # rounding of base + shape must not step over the bounds
    return plane, np.clip(base + shape, plane_low[plane], plane_high[plane])
