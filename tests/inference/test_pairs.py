"""Training pairs: targets for DPMs, normalization, augmentation, splits."""

from __future__ import annotations

import numpy as np
import pytest

from deepz_live.inference import (
    Normalization,
    PairConfig,
    PairSampler,
    TargetNormalization,
    ZStack,
    target_for_dpm,
)

OFFSET = 100.0


def _level_stack(n_z: int = 5, size: int = 4, step: float = 0.5) -> ZStack:
    """Plane k holds the value 10·(k + 1) everywhere; z = k · step."""
    data = np.stack([np.full((size, size), 10.0 * (k + 1)) for k in range(n_z)])
    return ZStack(data, step * np.arange(n_z), (0.2, 0.2), "levels")


def _linear_stack(n_z: int = 9, size: int = 48, seed: int = 0) -> ZStack:
    """offset + (1 + z)·P(y, x), z = 0..n_z-1 µm: linear in z, so interpolation is
    exact, and P is a random (asymmetric) positive texture."""
    pattern = 1.0 + np.random.default_rng(seed).random((size, size))
    z = np.arange(n_z, dtype=float)
    data = OFFSET + (1.0 + z)[:, None, None] * pattern
    return ZStack(data, z, (0.3, 0.3), f"linear{seed}")


def _exponential_stack(n_z: int = 9, size: int = 40) -> ZStack:
    """offset + 2^z·P(y, x) at z = 0..n_z-1 µm."""
    pattern = 1.0 + np.random.default_rng(5).random((size, size))
    z = np.arange(n_z, dtype=float)
    data = OFFSET + (2.0**z)[:, None, None] * pattern
    return ZStack(data, z, (0.3, 0.3), "exponential")


# --- target_for_dpm -------------------------------------------------------------------


def test_constant_dpm_of_a_plane_spacing_returns_that_plane() -> None:
    stack = _level_stack(step=0.5)
    target = target_for_dpm(stack, 1, np.full((2, 3), 1.0), 1, 0)  # 2 planes up
    np.testing.assert_allclose(target, 40.0, rtol=1e-6)
    assert target.shape == (2, 3) and target.dtype == np.float32
    down = target_for_dpm(stack, 3, np.full((2, 2), -1.5), 0, 0)
    np.testing.assert_allclose(down, 10.0, rtol=1e-6)


def test_half_a_spacing_is_the_mean_of_two_planes() -> None:
    stack = _level_stack(step=0.5)
    target = target_for_dpm(stack, 2, np.full((4, 4), 0.25), 0, 0)
    np.testing.assert_allclose(target, (30.0 + 40.0) / 2, rtol=1e-6)


def test_tilted_dpm_mixes_planes_column_by_column() -> None:
    """dpm 0 at the left column to 2 spacings at the right: by hand, per column."""
    stack = _level_stack(n_z=5, size=4, step=0.5)  # values 10, 20, 30, 40, 50
    dpm = np.tile(np.linspace(0.0, 1.0, 4), (3, 1))  # 0, 1/3, 2/3, 1 µm
    target = target_for_dpm(stack, 1, dpm, 1, 0)  # input plane z = 0.5 (value 20)
    # z = 0.5, 0.8333, 1.1667, 1.5 → 20; 20 + 2/3·10; 30 + 1/3·10; 40
    expected_columns = [20.0, 20.0 + 20.0 / 3.0, 30.0 + 10.0 / 3.0, 40.0]
    np.testing.assert_allclose(target, np.tile(expected_columns, (3, 1)), rtol=1e-6)


def test_dpm_per_pixel_uses_that_pixel_of_the_crop() -> None:
    stack = _linear_stack(n_z=6, size=10)  # z = 0..5 µm
    dpm = np.array([[0.0, 1.0], [2.5, -1.0]])
    target = target_for_dpm(stack, 2, dpm, 3, 4)
    pattern = (stack.data[0] - OFFSET)[3:5, 4:6]
    expected = OFFSET + (1.0 + 2.0 + dpm) * pattern
    np.testing.assert_allclose(target, expected, rtol=1e-5)


def test_uneven_plane_spacing() -> None:
    data = np.stack([np.full((2, 2), v) for v in (0.0, 10.0, 40.0)])
    stack = ZStack(data, [0.0, 1.0, 4.0], (1.0, 1.0), "uneven")
    target = target_for_dpm(stack, 0, np.full((2, 2), 2.5), 0, 0)
    np.testing.assert_allclose(target, 10.0 + 0.5 * 30.0)


def test_out_of_range_dpm_raises() -> None:
    stack = _level_stack(n_z=5, step=0.5)  # z from 0 to 2 µm
    with pytest.raises(ValueError, match="outside"):
        target_for_dpm(stack, 4, np.full((2, 2), 0.1), 0, 0)
    dpm = np.zeros((2, 2))
    dpm[1, 1] = -0.6
    with pytest.raises(ValueError, match="outside"):
        target_for_dpm(stack, 1, dpm, 0, 0)
    with pytest.raises(ValueError, match="leaves the"):
        target_for_dpm(stack, 1, np.zeros((2, 2)), 3, 0)


# --- sampling -------------------------------------------------------------------------


def _sampler(stacks: list[ZStack], **config: object) -> PairSampler:
    split = {
        k: config.pop(k) for k in ("split", "split_by", "val_fraction") if k in config
    }
    split.setdefault("split_by", "region")
    return PairSampler(
        stacks, PairConfig(**config), Normalization(offset=OFFSET), **split
    )


def test_sample_normalizes_target_with_the_input_scale() -> None:
    stack = _exponential_stack()
    sampler = _sampler(
        [stack], crop=16, dz_range_um=3.0, surface_fraction=0.0, val_fraction=0.2
    )
    rng = np.random.default_rng(0)
    signs = set()
    for _ in range(30):
        image, dpm, target = sampler.sample(rng)
        assert image.shape == dpm.shape == target.shape == (16, 16)
        dz = float(dpm[0, 0])
        np.testing.assert_array_equal(dpm, dz)  # constant
        assert abs(dz) <= 3.0
        signs.add(np.sign(dz))
        # input scaled by its own high percentile...
        assert np.percentile(image, 99.5) == pytest.approx(1.0, rel=1e-4)
        # ...and the target by the same scale: the raw ratio survives. With planes
        # 2^k (integer k) and linear interpolation, target/input depends on dz only.
        expected = 2.0 ** np.floor(dz) * (1.0 + dz - np.floor(dz))
        np.testing.assert_allclose(target / image, expected, rtol=1e-4)
    assert signs == {-1.0, 1.0}


def test_augmentations_keep_input_dpm_and_target_aligned() -> None:
    """With data offset + (1+z)·P, target/input - 1 = dpm / (1 + z_input) per pixel,
    which only holds if all three arrays got the same flip and rotation."""
    stack = _linear_stack(n_z=9, size=24)
    sampler = _sampler(
        [stack],
        crop=16,
        dz_range_um=4.0,
        surface_fraction=1.0,
        val_fraction=0.25,
        max_tilt_um=3.0,
        max_curvature_um=3.0,
    )
    rng = np.random.default_rng(1)
    for _ in range(40):
        image, dpm, target = sampler.sample(rng)
        assert np.ptp(dpm) > 0  # non-uniform
        assert np.abs(dpm).max() <= 4.0 + 1e-6
        # (pixels with a near-zero DPM carry no float32 precision for the ratio)
        clear = np.abs(dpm) > 0.05
        k = (target / image - 1.0)[clear] / dpm[clear]
        np.testing.assert_allclose(k, k[0], rtol=1e-3)
        z_input = 1.0 / k[0] - 1.0
        assert z_input == pytest.approx(round(z_input), abs=1e-3)
        assert 0 <= round(z_input) <= 8
        z_target = z_input + dpm
        assert z_target.min() >= -1e-6 and z_target.max() <= 8 + 1e-6


def test_augmentations_happen_only_when_enabled() -> None:
    stack = _linear_stack(n_z=5, size=16)
    orientations = {}
    for enabled in (True, False):
        sampler = PairSampler(
            [stack],
            PairConfig(crop=12, dz_range_um=1.0, flips=enabled, rotations=enabled),
            Normalization(offset=OFFSET),
            split_by="region",
            val_fraction=0.25,
        )
        rng = np.random.default_rng(2)
        seen = set()
        for _ in range(40):
            image, _, _ = sampler.sample(rng)
            # the crop's texture, whatever its plane: where the largest pixel is
            seen.add(tuple(np.argwhere(image == image.max())[0]))
        orientations[enabled] = seen
    assert len(orientations[True]) > len(orientations[False])


def test_surface_dpms_respect_the_configured_maxima() -> None:
    stack = _linear_stack(n_z=21, size=40)
    sampler = _sampler(
        [stack],
        crop=32,
        dz_range_um=5.0,
        surface_fraction=1.0,
        max_tilt_um=2.0,
        max_curvature_um=1.5,
        val_fraction=0.1,
        flips=False,
        rotations=False,
    )
    rng = np.random.default_rng(3)
    spans = [np.ptp(sampler.sample(rng)[1]) for _ in range(60)]
    assert max(spans) <= 2.0 + 1e-6
    assert min(spans) > 0
    assert max(spans) > 1.0  # the full range gets used


def test_batch_layout() -> None:
    stack = _linear_stack(n_z=9, size=40)
    sampler = _sampler([stack], crop=16, dz_range_um=4.0, val_fraction=0.25)
    x, y = sampler.batch(5, np.random.default_rng(4))
    assert x.shape == (5, 2, 16, 16) and y.shape == (5, 1, 16, 16)
    assert x.dtype == y.dtype == np.float32
    assert np.abs(x[:, 1]).max() <= 1.0 + 1e-6  # DPM scaled by the range
    assert np.abs(x[:, 1]).max() > 0.1


# --- splits -------------------------------------------------------------------------


def test_region_split_never_leaks() -> None:
    """Held-out columns are NaN: any training crop touching them would show NaN."""
    size, crop = 40, 12
    stack = _linear_stack(n_z=7, size=size)
    boundary = size - 10  # val_fraction 0.25 of 40 columns
    poisoned = stack.data.copy()
    poisoned[:, :, boundary:] = np.nan
    train = PairSampler(
        [ZStack(poisoned, stack.z_um, stack.pixel_um, "poisoned")],
        PairConfig(crop=crop, dz_range_um=3.0, surface_fraction=0.5),
        Normalization(offset=OFFSET),
        split_by="region",
        val_fraction=0.25,
    )
    assert train.regions[0].x_stop == boundary
    rng = np.random.default_rng(5)
    for _ in range(300):
        for array in train.sample(rng):
            assert np.all(np.isfinite(array))
    # and the other way round: validation draws only from the held-out band
    mirrored = stack.data.copy()
    mirrored[:, :, :boundary] = np.nan
    val = PairSampler(
        [ZStack(mirrored, stack.z_um, stack.pixel_um, "mirrored")],
        PairConfig(crop=crop - 4, dz_range_um=3.0),
        Normalization(offset=OFFSET),
        split="val",
        split_by="region",
        val_fraction=0.25,
    )
    for _ in range(100):
        assert all(np.all(np.isfinite(a)) for a in val.sample(rng))
    for pair in val.validation_pairs(n_inputs=3):
        assert np.all(np.isfinite(pair.input)) and np.all(np.isfinite(pair.target))
    (held_out,) = val.held_out_stacks()
    assert held_out.shape == (7, size, size - boundary)
    assert np.all(np.isfinite(held_out.data))


def test_region_split_crop_too_large() -> None:
    stack = _linear_stack(n_z=3, size=32)
    with pytest.raises(ValueError, match="crop 16 is larger than the val region"):
        _sampler([stack], crop=16, split="val", val_fraction=0.25)
    with pytest.raises(ValueError, match="crop 40 is larger"):
        _sampler([stack], crop=40)


def test_stack_split_is_disjoint_and_deterministic() -> None:
    stacks = [_linear_stack(n_z=3, size=16, seed=s) for s in range(4)]
    config = PairConfig(crop=8, dz_range_um=1.0)
    norm = Normalization(offset=OFFSET)

    def split(seed: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        train = PairSampler(stacks, config, norm, split="train", seed=seed)
        val = PairSampler(stacks, config, norm, split="val", seed=seed)
        return train.stack_indices, val.stack_indices

    train, val = split(0)
    assert len(val) == 1 and len(train) == 3
    assert set(train) | set(val) == {0, 1, 2, 3} and not set(train) & set(val)
    assert split(0) == (train, val)
    assert len({split(seed)[1] for seed in range(10)}) > 1  # the seed picks
    val_sampler = PairSampler(stacks, config, norm, split="val", seed=0)
    assert [s.source for s in val_sampler.held_out_stacks()] == [
        stacks[i].source for i in val
    ]
    with pytest.raises(ValueError, match="at least 2"):
        PairSampler(stacks[:1], config, norm, split_by="stack")


def test_mixed_pixel_sizes_rejected() -> None:
    a = _linear_stack(n_z=3, size=16)
    b = ZStack(a.data, a.z_um, (0.5, 0.5), "coarse")
    with pytest.raises(ValueError, match="one pixel size"):
        PairSampler([a, b], PairConfig(crop=8), Normalization(offset=OFFSET))


def test_validation_pairs_are_deterministic_constant_dpm_grid() -> None:
    stack = _exponential_stack(n_z=9, size=40)
    sampler = _sampler([stack], crop=16, dz_range_um=4.0, split="val", val_fraction=0.5)
    pairs = sampler.validation_pairs(n_inputs=3, dz_values=[-4.0, -1.5, 0.0, 4.0])
    again = sampler.validation_pairs(n_inputs=3, dz_values=[-4.0, -1.5, 0.0, 4.0])
    assert len(pairs) == 12  # every dz fits from some plane of a 8 µm deep stack
    assert [p.dz_um for p in pairs[:4]] == [-4.0, -1.5, 0.0, 4.0]
    for p, q in zip(pairs, again, strict=True):
        np.testing.assert_array_equal(p.input, q.input)
        np.testing.assert_array_equal(p.target, q.target)
        assert (p.plane_index, p.y0, p.x0) == (q.plane_index, q.y0, q.x0)
        assert p.x0 >= 20  # in the held-out half
        np.testing.assert_array_equal(p.dpm_um, p.dz_um)
        expected = 2.0 ** np.floor(p.dz_um) * (1 + p.dz_um - np.floor(p.dz_um))
        np.testing.assert_allclose(p.target / p.input, expected, rtol=1e-4)
        assert 0 <= stack.z_um[p.plane_index] + p.dz_um <= 8


# --- cross-modality: targets from another stack ---------------------------------------


def _scaled_target(stack: ZStack, offset: float = 50.0) -> ZStack:
    """Another 'detector': 2 × (input - its offset) + this detector's offset."""
    return ZStack(
        2.0 * (stack.data - OFFSET) + offset,
        stack.z_um,
        stack.pixel_um,
        f"{stack.source}-target",
    )


def test_target_stack_planes_pair_with_the_input_planes() -> None:
    """Same draws as a single-modality sampler; targets obey target = 2·input."""
    stacks = [_linear_stack(seed=0), _linear_stack(seed=1)]
    targets = [_scaled_target(s) for s in stacks]
    config = PairConfig(dz_range_um=3.0, crop=16, surface_fraction=0.5)
    norm = Normalization(offset=OFFSET)
    plain = PairSampler(stacks, config, norm, split_by="region", val_fraction=0.5)
    cross = PairSampler(
        stacks,
        config,
        norm,
        split_by="region",
        val_fraction=0.5,
        target_stacks=targets,
        target_normalization=TargetNormalization(Normalization(offset=50.0), "input"),
    )
    # the target detector's offset is removed, then the input crop's scale applies:
    # (2·(raw - OFFSET) + 50 - 50) / scale = 2 × the single-modality target
    for seed in range(6):
        image, dpm, target = plain.sample(np.random.default_rng(seed))
        image2, dpm2, target2 = cross.sample(np.random.default_rng(seed))
        np.testing.assert_array_equal(image2, image)
        np.testing.assert_array_equal(dpm2, dpm)
        np.testing.assert_allclose(target2, 2.0 * target, rtol=1e-5)
    for a, b in zip(plain.validation_pairs(4), cross.validation_pairs(4), strict=True):
        np.testing.assert_allclose(b.target, 2.0 * a.target, rtol=1e-5)
    # "stack" mode divides by the robust brightness ratio (exactly 2 here)
    matched = PairSampler(
        stacks,
        config,
        norm,
        split_by="region",
        val_fraction=0.5,
        target_stacks=targets,
        target_normalization=TargetNormalization(Normalization(offset=50.0), "stack"),
    )
    np.testing.assert_allclose(matched.target_brightness_ratios, 2.0, rtol=1e-5)
    _, _, target3 = matched.sample(np.random.default_rng(3))
    _, _, target = plain.sample(np.random.default_rng(3))
    np.testing.assert_allclose(target3, target, rtol=1e-5)


def test_held_out_target_stacks_follow_the_split() -> None:
    stacks = [_linear_stack(seed=0)]
    targets = [_scaled_target(stacks[0])]
    config = PairConfig(dz_range_um=3.0, crop=16)
    sampler = PairSampler(
        stacks,
        config,
        Normalization(offset=OFFSET),
        split="train",
        split_by="region",
        val_fraction=0.5,
        target_stacks=targets,
    )
    (held_in,) = sampler.held_out_stacks()
    (held_target,) = sampler.held_out_target_stacks()
    assert held_target.shape == held_in.shape == (9, 48, 24)
    np.testing.assert_allclose(held_target.data, 2.0 * (held_in.data - OFFSET) + 50)
    # the default target offset is fitted from the target stacks themselves
    assert sampler.target_normalization.normalization.offset != OFFSET
    plain = PairSampler(stacks, config, Normalization(offset=OFFSET), split_by="region")
    assert plain.held_out_target_stacks() is None


def test_target_stacks_must_match_the_stacks() -> None:
    stack = _linear_stack()
    config = PairConfig(dz_range_um=3.0, crop=16)
    norm = Normalization(offset=OFFSET)
    other = _linear_stack(n_z=7)
    with pytest.raises(ValueError, match="register"):
        PairSampler([stack], config, norm, split_by="region", target_stacks=[other])
    with pytest.raises(ValueError, match="one registered target stack"):
        PairSampler([stack], config, norm, split_by="region", target_stacks=[])
