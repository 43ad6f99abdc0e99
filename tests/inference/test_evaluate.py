"""Evaluation reproduces PSNR computed by hand, and reports it per |dz| bin."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest

from deepz_live.inference import (
    Normalization,
    TargetNormalization,
    ZStack,
    evaluate_stacks,
    plot_evaluation,
)
from deepz_live.inference._evaluate import choose_input_planes

if TYPE_CHECKING:
    from pathlib import Path

STEP = 1.0
C = 7.0  # each plane is the previous one plus C counts


def _offset_stack(n_planes: int = 15) -> tuple[ZStack, np.ndarray]:
    """Planes that differ by a constant: the identity's error is known exactly."""
    rng = np.random.default_rng(3)
    base = rng.uniform(100, 1100, (40, 40)).astype(np.float32)
    base[0, 0], base[0, 1] = 100, 1100  # range exactly 1000 counts
    data = np.stack([base + C * j for j in range(n_planes)])
    stack = ZStack(
        data=data, z_um=np.arange(n_planes) * STEP, pixel_um=(0.325, 0.325), source="s"
    )
    return stack, base


def test_psnr_per_bin_matches_hand_computation() -> None:
    stack, _ = _offset_stack()
    norm = Normalization(offset=0.0)
    delta = 0.004  # the "model" is the truth plus this error (normalized units)
    truth = {}
    for i in range(stack.data.shape[0]):
        scale = norm.scale_of(stack.data[i])
        truth[i] = (norm.apply(stack.data[i], scale), scale)

    def predict(x: np.ndarray, dz: np.ndarray) -> np.ndarray:
        i = next(k for k, (inp, _) in truth.items() if np.array_equal(inp, x))
        scale = truth[i][1]
        targets = [norm.apply(stack.data[i + round(d / STEP)], scale) for d in dz]
        return np.stack(targets) + delta

    result = evaluate_stacks(
        predict, [stack], norm, dz_range_um=5.0, inputs_per_stack=None, crop=None
    )
    assert [b.dz_um for b in result.bins] == [1, 2, 3, 4, 5]
    inputs = choose_input_planes(stack.z_um, 5.0, None)
    assert inputs == list(range(5, 10))  # full ±5 µm available
    for b in result.bins:
        assert b.pairs == 2 * len(inputs)
        # identity: error |dz|·C counts over a 1000-count range, scale-free
        assert b.psnr_identity == pytest.approx(20 * np.log10(1000 / (b.dz_um * C)))
        expected = np.mean(
            [20 * np.log10((1000 / truth[i][1]) / delta) for i in inputs]
        )
        assert b.psnr_model == pytest.approx(expected, rel=1e-6)
        assert b.ssim_identity < 1.0 and b.ssim_model > b.ssim_identity
    gain = result.mean_psnr_gain_db(2, 10)
    assert gain == pytest.approx(
        np.mean([b.psnr_model - b.psnr_identity for b in result.bins[1:]])
    )


def test_json_and_plot(tmp_path: Path) -> None:
    stack, _ = _offset_stack(9)
    norm = Normalization(offset=0.0)
    result = evaluate_stacks(
        lambda x, dz: np.repeat(x[None], dz.size, axis=0),
        [stack],
        norm,
        dz_range_um=3.0,
        inputs_per_stack=1,
        crop=None,
    )
    data = json.loads(json.dumps(result.to_dict()))
    assert {"bins", "mean_psnr_gain_db"} <= set(data)
    first = data["bins"][0]
    for key in ("dz_um", "psnr_model", "psnr_identity", "ssim_model", "ssim_identity"):
        assert key in first
    assert data["mean_psnr_gain_db"] == pytest.approx(0.0)  # identity vs identity
    png = plot_evaluation(result, tmp_path / "eval.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_input_planes_fall_back_when_stack_is_short() -> None:
    z = np.arange(5) * 1.0
    assert choose_input_planes(z, 10.0, 2) == [1, 3]
    assert choose_input_planes(z, 1.0, 1) == [2]


def test_target_stacks_score_against_the_other_modality() -> None:
    """Target = 3 × input planes on a 40-count offset: known PSNRs, bin 0 included."""
    stack, _ = _offset_stack()
    target = ZStack(
        data=3.0 * stack.data + 40.0,
        z_um=stack.z_um,
        pixel_um=stack.pixel_um,
        source="t",
    )
    norm = Normalization(offset=0.0)
    target_norm = TargetNormalization(Normalization(offset=40.0), "input")
    delta = 0.01

    def predict(x: np.ndarray, dz: np.ndarray) -> np.ndarray:
        # the truth in the target's units (3 × the input's) plus a known error
        steps = np.asarray(dz)[:, None, None] / STEP
        return 3.0 * (x[None] + steps * C / scale_of[x.tobytes()]) + delta

    scale_of = {}
    for i in range(stack.data.shape[0]):
        scale = norm.scale_of(stack.data[i])
        scale_of[norm.apply(stack.data[i], scale).tobytes()] = scale
    result = evaluate_stacks(
        predict,
        [stack],
        norm,
        dz_range_um=3.0,
        inputs_per_stack=None,
        crop=None,
        target_stacks=[target],
        target_normalization=target_norm,
    )
    assert [b.dz_um for b in result.bins] == [0, 1, 2, 3]
    for b in result.bins[1:]:
        # the identity is brightness-matched (× 3): error 3·|dz|·C over a 3000 range
        assert b.psnr_identity == pytest.approx(20 * np.log10(1000 / (b.dz_um * C)))
    inputs = choose_input_planes(stack.z_um, 3.0, None)
    scales = [norm.scale_of(stack.data[i]) for i in inputs]
    for b in result.bins:
        # model error: delta in units where the target's range is 3000 / scale
        expected = np.mean([20 * np.log10(3000 / s / delta) for s in scales])
        assert b.psnr_model == pytest.approx(expected, rel=1e-6)
    assert "cross-modality" in result.notes[0]
    with pytest.raises(ValueError, match="target_normalization"):
        evaluate_stacks(predict, [stack], norm, dz_range_um=3.0, target_stacks=[target])
