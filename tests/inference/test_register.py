"""Registration: a known sub-pixel 3-D shift is found, and the crops overlay."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from deepz_live.inference import ZStack, estimate_shift, register_pair, valid_slices


def _stack(data: np.ndarray, source: str = "s") -> ZStack:
    return ZStack(
        data=data,
        z_um=0.5 * np.arange(data.shape[0]),
        pixel_um=(0.2, 0.2),
        source=source,
    )


def _blobs(seed: int = 1, shape: tuple[int, int, int] = (24, 48, 52)) -> np.ndarray:
    """A few blurred points well inside the box on a constant background."""
    rng = np.random.default_rng(seed)
    points = np.zeros(shape)
    points[
        rng.integers(5, shape[0] - 5, 12),
        rng.integers(8, shape[1] - 8, 12),
        rng.integers(8, shape[2] - 8, 12),
    ] = 1.0
    return ndimage.gaussian_filter(points, (1.5, 1.2, 1.2)) * 1000.0 + 10.0


@pytest.mark.parametrize("true_shift", [(1.3, -2.7, 0.45), (-0.35, 0.8, -3.15)])
def test_known_subpixel_shift_is_recovered(true_shift) -> None:
    reference = _blobs()
    rng = np.random.default_rng(2)
    # moving[p] = reference[p + shift], so shifting moving by +shift undoes it
    moving = ndimage.shift(reference, [-v for v in true_shift], order=3, mode="nearest")
    noise = 0.02
    found = estimate_shift(
        _stack(reference + rng.normal(0, noise, reference.shape)),
        _stack(moving + rng.normal(0, noise, moving.shape)),
    )
    np.testing.assert_allclose(found, true_shift, atol=0.1)


def test_register_pair_crops_to_the_valid_overlap_and_aligns() -> None:
    reference = _blobs(seed=4)
    true_shift = (2.3, -3.4, 1.6)
    moving = ndimage.shift(reference, [-v for v in true_shift], order=3, mode="nearest")
    ref_stack = _stack(reference, "ref")
    mov_stack = ZStack(
        data=moving,
        z_um=ref_stack.z_um,
        pixel_um=(0.2, 0.2),
        source="mov",
        camera_offset=3.0,
    )
    before = np.corrcoef(reference.ravel(), moving.ravel())[0, 1]
    out_ref, out_mov, shift = register_pair(ref_stack, mov_stack)
    np.testing.assert_allclose(shift, true_shift, atol=0.1)
    # no extrapolated border: source p - shift within [0, n - 1] on every axis,
    # so z 3..23 (≥ 2.3), y 0..43 (≤ 47 - 3.4), x 2..51 (≥ 1.6)
    assert out_ref.shape == out_mov.shape == (21, 44, 50)
    np.testing.assert_array_equal(out_ref.z_um, out_mov.z_um)
    np.testing.assert_allclose(out_ref.z_um, 0.5 * np.arange(3, 24))
    assert out_mov.pixel_um == out_ref.pixel_um
    assert out_mov.camera_offset == 3.0 and out_mov.source == "mov[registered]"
    np.testing.assert_allclose(out_ref.data, reference[3:24, 0:44, 2:52], rtol=1e-6)
    after = np.corrcoef(out_ref.data.ravel(), out_mov.data.ravel())[0, 1]
    assert after > 0.99 > before


def test_valid_slices_keep_only_sources_inside_the_stack() -> None:
    region = valid_slices((10, 20, 30), (0.0, 2.5, -3.0))
    assert region == (slice(0, 10), slice(3, 20), slice(0, 27))


def test_mismatched_stacks_are_refused() -> None:
    a = _stack(np.zeros((4, 8, 8)))
    with pytest.raises(ValueError, match="same shape"):
        estimate_shift(a, _stack(np.zeros((4, 8, 9))))
    b = ZStack(np.zeros((4, 8, 8)), np.arange(4.0), (0.4, 0.4), "b")
    with pytest.raises(ValueError, match="voxels"):
        estimate_shift(a, b)
