"""The "deepz-stack" architecture: one pass gives a fixed stack of planes.

Configuration rules, interpolation between the fixed planes, training batches with
their targets and masks, training, the Refocuser on every installed backend, and
the benchmark's cost accounting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from deepz_live.inference import (
    DiscriminatorConfig,
    GeneratorConfig,
    InferenceError,
    ModelInfo,
    Normalization,
    PairConfig,
    PairSampler,
    Refocuser,
    TrainConfig,
    Trainer,
    ZStack,
    bench_refocuser,
    build_generator,
    estimate_gflops,
    load_model,
    save_model,
)
from deepz_live.inference._apply import interpolate_planes

if TYPE_CHECKING:
    from pathlib import Path

torch = pytest.importorskip("torch")

OFFSET = 100.0


# --- configuration ------------------------------------------------------------


def test_stack_config_lists_the_planes_and_round_trips() -> None:
    config = GeneratorConfig.stack(2.0, 0.5, base_width=4, depth=2)
    assert config.planes_um == (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)
    assert (config.in_channels, config.out_channels) == (1, 9)
    assert config.is_stack and not GeneratorConfig().is_stack
    assert GeneratorConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"planes_um": (0.0, 1.0)}, "only"),  # a deepz-unet with planes
        (
            {"architecture": "deepz-stack", "in_channels": 1, "out_channels": 3,
             "planes_um": (0.0, 1.0, 3.0)},
            "equal steps",
        ),
        (
            {"architecture": "deepz-stack", "in_channels": 2, "out_channels": 2,
             "planes_um": (0.0, 1.0)},
            "1 input channel",
        ),
        ({"architecture": "deepz-stack", "in_channels": 1}, "at least 2"),
    ],
)  # fmt: skip
def test_inconsistent_stack_configs_are_refused(fields, message) -> None:
    with pytest.raises(ValueError, match=message):
        GeneratorConfig(**fields)


def test_plane_step_must_divide_the_range() -> None:
    with pytest.raises(ValueError, match="whole steps"):
        GeneratorConfig.stack(10.0, 0.7)


# --- interpolation ------------------------------------------------------------


def _ramp_stack(grid: np.ndarray, shape=(5, 6)) -> np.ndarray:
    """Plane k = (3 + z_k)·P: linear in z, so linear interpolation is exact."""
    pattern = 1.0 + np.random.default_rng(0).random(shape)
    return ((3.0 + grid)[:, None, None] * pattern).astype(np.float32)


def test_grid_planes_come_back_exactly_and_between_is_linear() -> None:
    grid = np.arange(-2.0, 2.01, 0.5)
    stack = _ramp_stack(grid)
    on_grid = interpolate_planes(stack, grid, np.array([-2.0, 0.5, 2.0]))
    np.testing.assert_array_equal(on_grid, stack[[0, 5, 8]])
    between = interpolate_planes(stack, grid, np.array([-1.8, 0.25, 1.9]))
    expected = _ramp_stack(np.array([-1.8, 0.25, 1.9]))
    np.testing.assert_allclose(between, expected, rtol=1e-6)


def test_per_pixel_distances_interpolate_each_pixel() -> None:
    grid = np.arange(-2.0, 2.01, 0.5)
    stack = _ramp_stack(grid)
    tilt = np.tile(np.linspace(-1.9, 1.7, 6), (5, 1))
    surface = interpolate_planes(stack, grid, tilt[None])[0]
    pattern = stack[4] / 3.0  # plane z = 0
    np.testing.assert_allclose(surface, (3.0 + tilt) * pattern, rtol=1e-5)
    flat = interpolate_planes(stack, grid, np.full((1, 5, 6), 0.75))
    np.testing.assert_allclose(
        flat, interpolate_planes(stack, grid, np.array([0.75])), rtol=1e-6
    )


# --- training batches ---------------------------------------------------------


def _linear_stack(n_z: int = 9, size: int = 40, seed: int = 0) -> ZStack:
    """offset + (1 + z)·P(y, x), z = 0..n_z-1 µm (a rotation-asymmetric texture)."""
    pattern = 1.0 + np.random.default_rng(seed).random((size, size))
    z = np.arange(n_z, dtype=float)
    data = OFFSET + (1.0 + z)[:, None, None] * pattern
    return ZStack(data, z, (0.3, 0.3), f"linear{seed}")


def test_stack_batch_targets_and_mask_follow_the_stack() -> None:
    """Targets are the stack at z_input + dz, with the input's scale; a dz that
    leaves the stack is masked. Augmentation turns input and targets alike."""
    stack = _linear_stack()
    norm = Normalization(offset=OFFSET)
    sampler = PairSampler(
        [stack], PairConfig(dz_range_um=4.0, crop=16), norm, split_by="region"
    )
    planes = np.arange(-4.0, 4.01, 1.0)
    x, y, mask = sampler.stack_batch(32, np.random.default_rng(3), planes)
    assert x.shape == (32, 1, 16, 16) and y.shape == (32, 9, 16, 16)
    assert mask.shape == (32, 9)
    for k in range(32):
        # (1 + z)·P normalized by one scale: target_j / input = (1 + z + dz_j) / (1 + z)
        z_input = None
        for j in np.flatnonzero(mask[k]):
            ratio = y[k, j] / x[k, 0]
            np.testing.assert_allclose(ratio, ratio.mean(), rtol=1e-4)
            # solve (1 + z + dz) / (1 + z) = r for z: consistent across planes
            z_here = planes[j] / (ratio.mean() - 1) - 1 if planes[j] else None
            if z_here is not None:
                z_input = z_here if z_input is None else z_input
                assert z_here == pytest.approx(z_input, abs=1e-3)
        assert z_input is not None
        # the mask is exactly "z_input + dz inside 0..8 µm"
        inside = (z_input + planes >= -1e-6) & (z_input + planes <= 8 + 1e-6)
        np.testing.assert_array_equal(mask[k].astype(bool), inside)
        assert np.all(y[k, ~inside] == 0)


def test_cross_modality_is_refused_for_stack_batches() -> None:
    stack = _linear_stack()
    sampler = PairSampler(
        [stack], PairConfig(dz_range_um=2.0, crop=16), Normalization(offset=OFFSET),
        split_by="region", target_stacks=[stack],
    )  # fmt: skip
    with pytest.raises(ValueError, match="deepz-unet"):
        sampler.stack_batch(2, np.random.default_rng(0), [-1.0, 0.0, 1.0])


# --- training -----------------------------------------------------------------


def _blob_stack(seed: int, n_planes: int = 13, size: int = 48) -> ZStack:
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    points = np.zeros((size, size), np.float32)
    points[rng.integers(4, size - 4, 30), rng.integers(4, size - 4, 30)] = 2000
    z = np.arange(n_planes) * 1.0 - (n_planes // 2)
    planes = [ndimage.gaussian_filter(points, 0.8 + 0.6 * abs(zz)) for zz in z]
    data = np.stack(planes) + OFFSET + rng.normal(0, 2, (n_planes, size, size))
    return ZStack(data.astype(np.float32), z, (0.325, 0.325), f"blobs-{seed}",
                  camera_offset=OFFSET)  # fmt: skip


def _stack_config(**changes) -> TrainConfig:
    from dataclasses import replace

    base = TrainConfig(
        epochs=1, steps_per_epoch=2, batch_size=4,
        pairs=PairConfig(dz_range_um=4.0, crop=32),
        generator=GeneratorConfig.stack(4.0, 1.0, base_width=4, depth=2),
        discriminator=None, lr_generator=3e-3, device="cpu",
        val_inputs_per_stack=1, seed=1,
    )  # fmt: skip
    return replace(base, **changes)


@pytest.fixture(scope="module")
def blob_stacks() -> list[ZStack]:
    return [_blob_stack(s) for s in range(3)]


def test_stack_training_reduces_the_loss_and_saves_a_usable_model(
    blob_stacks, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    trainer = Trainer(blob_stacks, _stack_config())
    x, y, mask = trainer.train_pairs.stack_batch(
        8, np.random.default_rng(9), trainer.config.generator.planes_um
    )
    batch = tuple(torch.from_numpy(a) for a in (x, y, mask))
    losses = [trainer.step(batch)["l1"] for _ in range(80)]
    # the zero-initialised head starts as the identity: L2 = (input - target)²
    valid = mask.reshape(-1) > 0
    start = ((np.broadcast_to(x, y.shape).reshape(-1, 32, 32)[valid]
              - y.reshape(-1, 32, 32)[valid]) ** 2).mean()  # fmt: skip
    assert losses[0] == pytest.approx(start, rel=1e-4)
    # nine planes from a width-4 network: a clear fall, smaller than for one plane
    assert np.mean(losses[-5:]) < 0.8 * losses[0]
    trainer.history = []
    result = trainer.validate()
    # bin 0 holds only objects in the input plane (axial figures), no image pairs
    assert result.bins and all(b.pairs > 0 for b in result.bins if b.dz_um > 0)
    out = tmp_path / "stack.safetensors"
    save_model(out, trainer.generator, trainer.model_info("stack-test"))
    generator, info = load_model(out)
    assert generator.config.planes_um == trainer.config.generator.planes_um
    assert info.dz_range_um == 4.0


def test_stack_training_refuses_what_it_cannot_do(blob_stacks) -> None:
    with pytest.raises(InferenceError, match="--no-gan"):
        Trainer(blob_stacks, _stack_config(discriminator=DiscriminatorConfig()))
    with pytest.raises(InferenceError, match="deepz-unet"):
        Trainer(blob_stacks, _stack_config(), target_stacks=blob_stacks)
    with pytest.raises(InferenceError, match="at least as large"):
        Trainer(blob_stacks, _stack_config(pairs=PairConfig(dz_range_um=3.0, crop=32)))


# --- the Refocuser ------------------------------------------------------------


@pytest.fixture
def stack_model(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    torch.manual_seed(0)
    config = GeneratorConfig.stack(6.0, 1.0, base_width=4, depth=2, residual=False)
    generator = build_generator(config)
    with torch.no_grad():
        for p in generator.parameters():
            p.add_(0.05 * torch.randn_like(p))
    info = ModelInfo(
        name="stack", generator=config.to_dict(),
        normalization={"offset": OFFSET, "percentile": 99.5, "min_scale": 1.0},
        pixel_size_um=0.325, dz_range_um=6.0, dpm_scale_um=6.0,
    )  # fmt: skip
    path = tmp_path / "stack.safetensors"
    save_model(path, generator, info)
    return path


def _frame(shape=(37, 50)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (OFFSET + rng.gamma(2.0, 300.0, shape)).astype(np.uint16)


def _backends() -> list[str]:
    import importlib.util

    names = ["torch"]
    if importlib.util.find_spec("onnxruntime") is not None:
        names.append("onnxruntime")
    return names


@pytest.mark.parametrize("backend", _backends())
def test_refocuser_serves_stack_models_on_every_backend(stack_model, backend) -> None:
    """Grid planes are the network's channels (padded, cropped, de-normalized);
    planes in between are linear mixes; surfaces interpolate per pixel."""
    refocuser = Refocuser(stack_model, backend=backend)
    frame = _frame()
    generator, info = load_model(stack_model)
    norm = Normalization.from_dict(info.normalization)
    scale = norm.scale_of(frame.astype(np.float32))
    image = np.pad(norm.apply(frame.astype(np.float32), scale), ((1, 2), (1, 1)),
                   mode="reflect")  # fmt: skip
    with torch.inference_mode():
        channels = generator(torch.from_numpy(image[None, None]))[0].numpy()
    expected = norm.invert(channels[:, 1:38, 1:51], scale)  # planes -6..6 µm
    span = float(expected.max() - expected.min())

    got = refocuser.refocus(frame, [-6.0, -1.0, 0.0, 4.0])
    assert np.abs(got - expected[[0, 5, 6, 10]]).max() <= 1e-3 * span
    half = refocuser.refocus(frame, [2.5])[0]
    np.testing.assert_allclose(
        half, 0.5 * (expected[8] + expected[9]), atol=1e-3 * span
    )
    tilt = np.tile(np.linspace(-3.0, 3.0, frame.shape[1]), (frame.shape[0], 1))
    surface = refocuser.refocus_surface(frame, tilt)
    column = 0  # dz = -3 µm exactly: the -3 µm plane
    np.testing.assert_allclose(surface[:, column], expected[3][:, column],
                               atol=1e-3 * span)  # fmt: skip
    with pytest.raises(InferenceError, match="trained range"):
        refocuser.refocus(frame, [6.5])


def test_bench_counts_one_pass_per_volume_for_stack_models(stack_model) -> None:
    result = bench_refocuser(stack_model, backend="torch", size=32, planes=5, volumes=2)
    config = GeneratorConfig.from_dict(load_model(stack_model)[1].generator)
    assert result.gflop_per_volume == pytest.approx(estimate_gflops(config, 32, 32))
