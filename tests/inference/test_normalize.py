"""Intensity normalization: round trip, robustness, serialisation, fitting."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepz_live.inference import Normalization, ZStack


def _camera_frame(rng: np.random.Generator, offset: float = 100.0) -> np.ndarray:
    """A 16-bit camera frame: offset + Poisson signal + read noise, rounded."""
    signal = 50 + 2000 * np.exp(-((np.arange(64) - 30) ** 2) / 200.0)
    electrons = rng.poisson(np.outer(signal, signal / signal.max()))
    counts = offset + 2.0 * electrons + rng.normal(0, 3, size=electrons.shape)
    return np.clip(np.round(counts), 0, 65535).astype(np.uint16)


def test_apply_invert_round_trip() -> None:
    rng = np.random.default_rng(0)
    frame = _camera_frame(rng)
    norm = Normalization(offset=100.0)
    scale = norm.scale_of(frame)
    normalized = norm.apply(frame, scale)
    assert normalized.dtype == np.float32
    back = norm.invert(normalized, scale)
    assert back.dtype == np.float32
    eps = np.finfo(np.float32).eps
    np.testing.assert_allclose(back, frame, rtol=2 * eps, atol=0)


def test_scale_is_the_high_percentile_above_offset() -> None:
    frame = np.arange(1000, dtype=np.float32) + 500  # 500 .. 1499
    norm = Normalization(offset=500.0, percentile=99.5)
    assert norm.scale_of(frame) == pytest.approx(np.percentile(frame - 500.0, 99.5))
    normalized = norm.apply(frame)
    assert np.percentile(normalized, 99.5) == pytest.approx(1.0, rel=1e-6)
    assert normalized.min() == pytest.approx(0.0)


def test_hot_pixels_barely_move_the_scale() -> None:
    rng = np.random.default_rng(1)
    frame = _camera_frame(rng).astype(np.float32)
    norm = Normalization(offset=100.0)
    clean = norm.scale_of(frame)
    hot = frame.copy()
    hot.flat[rng.choice(hot.size, size=5, replace=False)] = 65535  # 5 of 4096
    assert norm.scale_of(hot) == pytest.approx(clean, rel=0.02)
    # the maximum, for contrast, is ruined by them
    assert hot.max() - 100 > 10 * clean


def test_scale_floor_for_dark_frames() -> None:
    norm = Normalization(offset=100.0, min_scale=1.0)
    dark = np.full((16, 16), 98.0, np.float32)  # below the offset everywhere
    assert norm.scale_of(dark) == 1.0
    assert np.all(np.isfinite(norm.apply(dark)))


def test_target_normalized_with_input_scale_keeps_the_ratio() -> None:
    rng = np.random.default_rng(2)
    image = _camera_frame(rng).astype(np.float32)
    target = 100 + 0.5 * (image - 100)  # half as bright, e.g. defocused
    norm = Normalization(offset=100.0)
    scale = norm.scale_of(image)
    ratio = norm.apply(target, scale) / np.maximum(norm.apply(image, scale), 1e-6)
    bright = image > 200
    np.testing.assert_allclose(ratio[bright], 0.5, rtol=1e-5)


def test_dict_round_trip_and_validation() -> None:
    norm = Normalization(offset=99.5, percentile=99.0, min_scale=2.0)
    restored = Normalization.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert restored == norm
    assert Normalization.from_dict({"offset": 3}) == Normalization(offset=3.0)
    with pytest.raises(ValueError, match="unknown normalization keys"):
        Normalization.from_dict({"offset": 1.0, "gain": 2.0})
    with pytest.raises(ValueError, match="lacks 'offset'"):
        Normalization.from_dict({"percentile": 99.0})
    with pytest.raises(ValueError, match="must be a number"):
        Normalization.from_dict({"offset": "100"})
    with pytest.raises(ValueError, match="percentile"):
        Normalization(offset=0.0, percentile=0.0)


def _stack(data: np.ndarray, offset: float | None) -> ZStack:
    return ZStack(
        data, np.arange(data.shape[0], dtype=float), (1.0, 1.0), "s", None, None, offset
    )


def test_fit_uses_camera_offset_when_every_stack_knows_it() -> None:
    rng = np.random.default_rng(3)
    data = rng.uniform(300, 400, size=(3, 16, 16)).astype(np.float32)
    stacks = [_stack(data, 100.0), _stack(data + 5, 100.0)]
    assert Normalization.fit(stacks).offset == 100.0
    assert Normalization.fit(stacks, percentile=99.0).percentile == 99.0
    with pytest.raises(ValueError, match="different camera offsets"):
        Normalization.fit([_stack(data, 100.0), _stack(data, 200.0)])


def test_fit_estimates_the_dark_level_otherwise() -> None:
    rng = np.random.default_rng(4)
    data = (100 + rng.normal(0, 2, size=(3, 32, 32))).astype(np.float32)
    data[:, 8:24, 8:24] += 1000  # bright object on a dark background
    fitted = Normalization.fit([_stack(data, None), _stack(data, 100.0)])
    # one stack lacks the offset: estimated near the background, not the signal
    assert 90 < fitted.offset < 100
