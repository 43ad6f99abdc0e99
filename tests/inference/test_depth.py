"""Depth measures: peaks along z, objects of a scan, axial error in evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepz_live.inference import Normalization, ZStack, evaluate_stacks
from deepz_live.inference._depth import bin_width_um, find_objects, isolated, peak_z

STEP = 0.5
N_Z = 41
SHAPE = (64, 64)
# (z_um, y, x) of the synthetic objects: laterally apart, at several depths
OBJECTS = np.array(
    [[3.2, 12.0, 14.0], [7.9, 40.0, 18.0], [11.4, 20.0, 46.0], [15.1, 48.0, 50.0]]
)


def _blobs(z_um: np.ndarray, objects: np.ndarray) -> np.ndarray:
    """Gaussian objects whose width grows away from their focus (a widefield toy)."""
    yy, xx = np.indices(SHAPE, dtype=np.float64)
    volume = np.zeros((z_um.size, *SHAPE))
    for z0, y0, x0 in objects:
        for k, z in enumerate(z_um):
            sigma = 1.2 + 0.8 * abs(z - z0)
            amplitude = 1000.0 * (1.2 / sigma) ** 2  # energy kept through focus
            volume[k] += amplitude * np.exp(
                -((yy - y0) ** 2 + (xx - x0) ** 2) / (2 * sigma**2)
            )
    return volume + 100.0  # camera offset


def _stack(with_twin: bool = True) -> ZStack:
    z = np.arange(N_Z) * STEP
    clean = _blobs(z, OBJECTS).astype(np.float32)
    noisy = np.random.default_rng(0).poisson(clean).astype(np.float32)
    return ZStack(
        data=noisy,
        z_um=z,
        pixel_um=(0.325, 0.325),
        source="blobs",
        clean=clean if with_twin else None,
        na=0.75,
        wavelength_um=0.525,
    )


def test_peak_z_finds_the_vertex_between_planes() -> None:
    z = np.arange(11) * 0.5
    vertex = 2.37
    profile = 10.0 - (z - vertex) ** 2
    assert peak_z(profile, z) == pytest.approx(vertex, abs=1e-9)
    # several profiles at once; a peak on the last plane is not refined
    both = np.stack([profile, z.copy()])
    assert peak_z(both, z) == pytest.approx([vertex, z[-1]])


def test_objects_of_a_scan_are_found_at_their_focus() -> None:
    stack = _stack()
    for volume, smooth in ((stack.clean, False), (stack.data, True)):
        found = find_objects(volume - 100.0, stack.z_um, smooth=smooth)
        assert found.shape == OBJECTS.shape
        order = np.argsort(found[:, 0])
        assert found[order, 1:] == pytest.approx(OBJECTS[:, 1:], abs=1.0)
        assert found[order, 0] == pytest.approx(OBJECTS[:, 0], abs=0.2)


def test_isolation_drops_objects_above_one_another() -> None:
    objects = np.array([[1.0, 10.0, 10.0], [5.0, 11.0, 10.0], [3.0, 40.0, 40.0]])
    assert isolated(objects, 3.0).tolist() == [False, False, True]
    assert isolated(objects, 0.5).tolist() == [True, True, True]


def test_bin_width_follows_the_depth_of_field() -> None:
    stack = _stack()
    assert bin_width_um([stack]) == 1.0  # 0.525 µm / 0.75² = 0.93 µm -> 1.0
    oil = ZStack(
        data=stack.data, z_um=stack.z_um * 0.4, pixel_um=(0.1, 0.1), source="oil",
        na=1.4, wavelength_um=0.525,
    )  # fmt: skip
    assert bin_width_um([oil]) == 0.5  # 0.525 × 1.515 / 1.96 = 0.41 µm -> 0.5
    bare = ZStack(data=stack.data, z_um=stack.z_um, pixel_um=(1, 1), source="bare")
    assert bin_width_um([bare]) == 1.0


def _truth_predictor(stack: ZStack, norm: Normalization):
    """A perfect model: the clean planes at the requested distances."""
    inputs = {}
    for i in range(stack.shape[0]):
        scale = norm.scale_of(stack.data[i])
        inputs[norm.apply(stack.data[i], scale).tobytes()] = (i, scale)

    def predict(x: np.ndarray, dz: np.ndarray) -> np.ndarray:
        i, scale = inputs[x.tobytes()]
        planes = [i + round(d / STEP) for d in dz]
        return norm.apply(stack.clean[planes], scale)

    return predict


def test_evaluation_scores_depth_and_clean_targets() -> None:
    stack = _stack()
    norm = Normalization(offset=100.0)
    result = evaluate_stacks(
        _truth_predictor(stack, norm), [stack], norm, dz_range_um=8.0,
        inputs_per_stack=3, crop=None, sections=1,
    )  # fmt: skip
    data = json.loads(json.dumps(result.to_dict()))
    assert data["clean_targets"] is True
    assert data["bin_um"] == 1.0
    # the perfect model puts every object at its focus; the focal-plane guess does not
    assert data["axial_objects"] >= 6
    assert data["axial_error_median_um"] < 0.15
    assert data["axial_within_1um_fraction"] == 1.0
    assert data["axial_baseline_median_um"] > 1.5
    scored = [b for b in data["bins"] if b["axial_objects"]]
    for b in scored:
        # the baseline's error is the object's distance from the input plane
        assert abs(b["axial_baseline_median_um"] - b["dz_um"]) <= 0.5 + 1e-6
    # against the clean planes the perfect model is exact: far above the identity
    for b in data["bins"]:
        if b["psnr_model_clean"] is not None:
            assert b["psnr_model_clean"] > b["psnr_identity_clean"] + 20
            assert b["psnr_model_clean"] > b["psnr_model"]  # noisy targets cap it
    assert len(result.sections) == 1
    section = result.sections[0]
    assert section.scan[0].shape == section.model[0].shape


def test_identity_model_localizes_like_the_focal_plane_guess() -> None:
    """A model that repeats its input has a flat profile: no better than the guess."""
    stack = _stack(with_twin=False)
    norm = Normalization(offset=100.0)

    def blur_with_distance(x: np.ndarray, dz: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        return np.stack([ndimage.gaussian_filter(x, 0.3 + abs(d)) for d in dz])

    result = evaluate_stacks(
        blur_with_distance, [stack], norm, dz_range_um=8.0, inputs_per_stack=3,
        crop=None,
    )  # fmt: skip
    axial = result.axial()
    assert result.clean_targets is False
    assert axial["axial_objects"] >= 4
    # brightest where least blurred: at the input plane, like the baseline
    assert axial["axial_error_median_um"] == pytest.approx(
        axial["axial_baseline_median_um"], abs=0.3
    )
    assert all(b.psnr_model_clean is None for b in result.bins)
