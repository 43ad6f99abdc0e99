"""What a `Refocuser` cannot use is refused by name, never turned into a NaN volume.

Non-finite pixels, non-finite weights, a non-finite output; float frames that are
not camera counts (the rule: `Normalization.input_scale`); frames and planes of the
wrong kind. Each is an `InferenceError` (or `ModelFileError`) with a one-line
message that says what to do.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pytest

from deepz_live.inference import (
    GeneratorConfig,
    InferenceError,
    ModelFileError,
    ModelInfo,
    Normalization,
    Refocuser,
    build_generator,
    load_model,
    save_model,
)

if TYPE_CHECKING:
    from pathlib import Path

torch = pytest.importorskip("torch")

CONFIG = GeneratorConfig(base_width=4, depth=2, residual=False)


def _save(path: Path, *, offset: float = 100.0, weights_times: float = 1.0) -> Path:
    torch.manual_seed(0)
    generator = build_generator(CONFIG)
    with torch.no_grad():
        for parameter in generator.parameters():
            parameter.mul_(weights_times)
    info = ModelInfo(
        name="tiny",
        generator=CONFIG.to_dict(),
        normalization={"offset": offset, "percentile": 99.5, "min_scale": 1.0},
        pixel_size_um=0.325,
        dz_range_um=6.0,
        dpm_scale_um=6.0,
    )
    save_model(path, generator, info)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(tmp_path_factory.mktemp("models") / "tiny.safetensors")


@pytest.fixture(scope="module")
def refocuser(model: Path) -> Refocuser:
    return Refocuser(model, backend="torch")


def _counts(shape=(32, 40), seed: int = 0) -> np.ndarray:
    """A uint16 camera frame: offset 100 plus signal."""
    rng = np.random.default_rng(seed)
    return (100 + rng.gamma(2.0, 300.0, shape)).astype(np.uint16)


# -- non-finite pixels ---------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_are_refused_with_their_count(refocuser, bad) -> None:
    frame = _counts().astype(np.float32)
    frame[3, 4] = bad
    frame[10, 11] = bad
    with pytest.raises(InferenceError, match=r"2 NaN or infinite pixel\(s\) of 1280"):
        refocuser.refocus(frame, [0.0])
    with pytest.raises(InferenceError, match="NaN or infinite"):
        refocuser.refocus_surface(frame, np.zeros(frame.shape))


def test_float64_beyond_float32_counts_as_non_finite(refocuser) -> None:
    frame = _counts().astype(np.float64)
    frame[0, 0] = 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the overflowing cast stays quiet
        with pytest.raises(InferenceError, match="1 NaN, infinite or beyond float32"):
            refocuser.refocus(frame, [0.0])


# -- non-finite weights and outputs --------------------------------------------------
@pytest.fixture(scope="module")
def nan_model(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    generator, info = load_model(model)
    with torch.no_grad():
        parameters = list(generator.parameters())
        parameters[0][0, 0, 0, 0] = float("nan")
        parameters[-1].fill_(float("inf"))
    path = tmp_path_factory.mktemp("broken") / "nan.safetensors"
    save_model(path, generator, info)
    return path


def test_a_model_with_non_finite_weights_is_refused_when_loaded(nan_model) -> None:
    message = r"weights are NaN or infinite \(in .*\), so every refocused plane"
    with pytest.raises(ModelFileError, match=message):
        load_model(nan_model)
    with pytest.raises(ModelFileError, match=message):
        Refocuser(nan_model, backend="torch")


@pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime"
)
def test_backends_that_never_load_the_generator_check_the_weights_too(
    nan_model, monkeypatch
) -> None:
    from deepz_live.inference import _export

    def no_export(*args, **kwargs):  # the check comes first, before any export
        raise AssertionError("exported a model with NaN weights")

    monkeypatch.setattr(_export, "cached_onnx", no_export)
    with pytest.raises(ModelFileError, match="weights are NaN or infinite"):
        Refocuser(nan_model, backend="onnxruntime")


def test_a_non_finite_output_is_reported(tmp_path) -> None:
    # finite weights, but so large that float32 activations overflow
    huge = _save(tmp_path / "huge.safetensors", weights_times=1e12)
    refocuser = Refocuser(huge, backend="torch")
    with pytest.raises(InferenceError, match=r"returned 2560 NaN or infinite value"):
        refocuser.refocus(_counts(), [-2.0, 2.0])


# -- float frames: camera counts, or refused -------------------------------------------
def test_float_counts_refocus_exactly_like_the_integers(refocuser) -> None:
    frame = np.minimum(_counts(), 2048)  # float16 holds integers up to 2048 exactly
    expected = refocuser.refocus(frame, [-2.0, 2.0])
    for dtype in (np.float16, np.float32, np.float64):
        got = refocuser.refocus(frame.astype(dtype), [-2.0, 2.0])
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("convert", "message"),
    [
        (lambda f: f / 65535.0, r"less than 1 count\(s\) above the camera offset"),
        (lambda f: f / f.max(), r"less than 1 count\(s\) above the camera offset"),
        (lambda f: f.astype(np.float32) - 100, "under half the camera offset"),
        (lambda f: np.zeros(f.shape, np.float32), "less than 1 count"),
    ],
    ids=["img_as_float", "0..1", "offset subtracted", "blank"],
)
def test_float_frames_that_are_not_counts_are_refused(
    refocuser, convert, message
) -> None:
    with pytest.raises(InferenceError, match=message) as error:
        refocuser.refocus(convert(_counts()), [0.0])
    assert "×65535" in str(error.value) and "add back" in str(error.value)
    assert "\n" not in str(error.value)


def test_an_offset_free_model_takes_offset_free_floats_but_not_0_to_1(
    tmp_path,
) -> None:
    refocuser = Refocuser(_save(tmp_path / "m.safetensors", offset=0.0))
    frame = _counts() - np.uint16(100)
    expected = refocuser.refocus(frame, [0.0])
    np.testing.assert_array_equal(
        refocuser.refocus(frame.astype(np.float32), [0.0]), expected
    )
    # 0..1: the 1-count floor of the scale would replace the frame's own scale
    with pytest.raises(InferenceError, match="not in camera counts"):
        refocuser.refocus(frame / 65535.0, [0.0])


def test_input_scale_is_scale_of_for_counts() -> None:
    norm = Normalization(offset=100.0)
    frame = _counts()
    assert norm.input_scale(frame) == norm.scale_of(frame)
    assert norm.input_scale(frame.astype(np.float32)) == pytest.approx(
        norm.scale_of(frame)
    )
    dark = np.full((8, 8), 100, np.uint16)  # integers are counts, even blank ones
    assert norm.input_scale(dark) == norm.min_scale
    with pytest.raises(ValueError, match="not in camera counts"):
        norm.input_scale(dark.astype(np.float32))


def test_the_live_warm_up_frame_is_accepted_for_float_cameras(model) -> None:
    from deepz_live.live import RefocuserProcessor

    processor = RefocuserProcessor(model, [0.0], backend="torch")
    processor.setup((16, 24), np.dtype(np.float32), {"pixel_size_um": 0.325})
    volume = processor.process(_counts((16, 24)).astype(np.float32))
    assert volume.shape == (1, 16, 24) and np.isfinite(volume).all()


# -- frames and planes of the wrong kind -----------------------------------------------
@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros(40, np.uint16), "Expected one 2-D frame"),
        (np.zeros((1, 32, 40), np.uint16), "Expected one 2-D frame"),
        (np.zeros((32, 40), bool), "integer or float images, got dtype bool"),
        (np.zeros((32, 40), complex), "got dtype complex128"),
        (np.full((32, 40), "a"), "got dtype <U1"),
        (np.zeros((0, 40), np.uint16), "too small"),
        ([[1, 2], [3]], "not an image array"),
    ],
    ids=["1-D", "3-D", "bool", "complex", "text", "empty", "ragged"],
)
def test_frames_of_the_wrong_kind(refocuser, frame, message) -> None:
    with pytest.raises(InferenceError, match=message):
        refocuser.refocus(frame, [0.0])


@pytest.mark.parametrize(
    ("planes", "message"),
    [
        ([], "non-empty list"),
        ([[0.0, 1.0]], "non-empty list"),
        ([0.0, float("nan")], "must be finite"),
        ([float("inf")], "must be finite"),
        (["near"], "must hold numbers"),
        ([0.0, 7.0], "outside the model's trained range ±6 µm"),
    ],
)
def test_planes_that_cannot_be_refocused_to(refocuser, planes, message) -> None:
    with pytest.raises(InferenceError, match=message):
        refocuser.refocus(_counts(), planes)


def test_surfaces_that_cannot_be_refocused_to(refocuser) -> None:
    frame = _counts()
    with pytest.raises(InferenceError, match="must hold numbers"):
        refocuser.refocus_surface(frame, [["a"]])
    with pytest.raises(InferenceError, match="NaN or infinite"):
        refocuser.refocus_surface(frame, np.full(frame.shape, np.nan))
