"""The TensorRT backend's own logic, run against a fake ``tensorrt`` and fake CUDA.

Covered: the engine cache (hit, corrupt engine rebuilt), the timing cache (a
rejected one replaced, another process's entries kept), the builder flags, batching
and padding, the bf16 version check, and ``backend="auto"`` falling back to torch.
The fakes (``conftest.py``) follow TensorRT's documented Python API; whether the
real TensorRT behaves as documented only the ``gpu`` tests can say.
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pytest

from deepz_live.inference import (
    GeneratorConfig,
    InferenceError,
    ModelInfo,
    Refocuser,
    TensorRTBuildError,
    build_generator,
    load_model,
    save_model,
    sidecar_path,
)
from deepz_live.inference._tensorrt_backend import TensorRTBackend
from deepz_live.inference._tensorrt_support import check_tensorrt_version

if TYPE_CHECKING:
    from pathlib import Path

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny deepz-unet model and its fp32/fp16 ONNX exports, made once."""
    from deepz_live.inference._export import cached_onnx

    folder = tmp_path_factory.mktemp("trt-fakes")
    config = GeneratorConfig(base_width=4, depth=2, residual=False)
    torch.manual_seed(0)
    info = ModelInfo(
        name="tiny",
        generator=config.to_dict(),
        normalization={"offset": 100.0, "percentile": 99.5, "min_scale": 1.0},
        pixel_size_um=0.325,
        dz_range_um=6.0,
        dpm_scale_um=6.0,
        created="2026-11-21T00:00:00+00:00",
    )
    model = folder / "tiny.safetensors"
    save_model(model, build_generator(config), info)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(folder / "cache"))
        for precision in ("fp32", "fp16"):
            cached_onnx(model, precision=precision)
    return model, folder / "cache" / "deepz-live" / "onnx"


@pytest.fixture
def model(exported, tmp_path, monkeypatch) -> Path:
    """The tiny model, with a fresh cache folder that already holds its exports."""
    path, onnx_folder = exported
    cache = tmp_path / "cache"
    shutil.copytree(onnx_folder, cache / "deepz-live" / "onnx")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return path


@pytest.fixture
def engines(model, tmp_path) -> Path:
    return tmp_path / "cache" / "deepz-live" / "tensorrt"


@pytest.fixture
def generators_on_cpu(monkeypatch) -> list[str]:
    """The Refocuser's generator loader, kept on the CPU (torch has no CUDA here);
    returns the devices it was asked for."""
    from deepz_live.inference import _refocuser

    asked: list[str] = []

    def load_on_cpu(model, *, device="cpu"):
        asked.append(str(device))
        return load_model(model, device="cpu")

    monkeypatch.setattr(_refocuser, "load_model", load_on_cpu)
    return asked


def _inputs(n: int, height: int = 32, width: int = 48) -> np.ndarray:
    rng = np.random.default_rng(n)
    return rng.uniform(-1, 3, (n, 2, height, width)).astype(np.float32)


def _frame(shape=(37, 50)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (100 + rng.gamma(2.0, 300.0, shape)).astype(np.uint16)


# -- engine cache --------------------------------------------------------------------
def test_engine_cache_hit_and_a_corrupt_engine_is_rebuilt(
    fake_tensorrt, fake_cuda, model, engines
) -> None:
    first = TensorRTBackend(model, precision="fp32", batch=4, height=32, width=48)
    assert fake_tensorrt.state.builds == [(4, 2, 32, 48)]
    (engine,) = engines.glob("*.engine")
    sidecar = json.loads(sidecar_path(engine).read_text())
    assert sidecar["key"] == engine.stem and sidecar["shape"] == [4, 2, 32, 48]
    assert sidecar["gpu"] == "Fake GPU" and sidecar["compute_capability"] == "9.0"
    assert sidecar["tensorrt"] == "10.13.0.35" and sidecar["precision"] == "fp32"
    x = _inputs(4)
    np.testing.assert_array_equal(first.infer(x), fake_tensorrt.network_output(x, 1))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = TensorRTBackend(model, precision="fp32", batch=4, height=32, width=48)
    assert len(fake_tensorrt.state.builds) == 1  # loaded from the cache
    np.testing.assert_array_equal(again.infer(x), fake_tensorrt.network_output(x, 1))

    engine.write_bytes(b"half an engine")
    with pytest.warns(RuntimeWarning, match="could not be loaded.*rebuilding"):
        rebuilt = TensorRTBackend(model, precision="fp32", batch=4, height=32, width=48)
    assert len(fake_tensorrt.state.builds) == 2
    assert engine.read_bytes().startswith(b"FAKE-ENGINE")  # replaced on disk
    np.testing.assert_array_equal(rebuilt.infer(x), fake_tensorrt.network_output(x, 1))

    # another precision is another engine (and another ONNX graph)
    TensorRTBackend(model, precision="fp16", batch=4, height=32, width=48)
    assert len(list(engines.glob("*.engine"))) == 2


def test_builds_are_strongly_typed_fixed_shape_and_without_tf32(
    fake_tensorrt, fake_cuda, model
) -> None:
    """fp32 means IEEE fp32 (TF32 is on by default in TensorRT, so it is cleared)."""
    for precision in ("fp32", "fp16"):
        TensorRTBackend(model, precision=precision, batch=2, height=16, width=16)
    configs = fake_tensorrt.state.configs
    assert len(configs) == 2
    for config in configs:
        assert fake_tensorrt.BuilderFlag.TF32 not in config.flags
        (profile,) = config.profiles
        assert profile.shapes["x"] == ((2, 2, 16, 16),) * 3  # min = opt = max
        assert config.pool_limits  # the workspace limit is set


# -- timing cache --------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad", [b"not a timing cache", b"FAKE-TC-OTHER-GPU[]"], ids=["corrupt", "foreign"]
)
def test_a_rejected_timing_cache_is_replaced(
    fake_tensorrt, fake_cuda, model, engines, bad
) -> None:
    TensorRTBackend(model, precision="fp32", batch=1, height=16, width=16)
    (timing,) = engines.glob("timing-*.cache")
    assert timing.name == "timing-trt10.13.0.35-Fake-GPU-sm90.cache"
    timing.write_bytes(bad)
    with pytest.warns(RuntimeWarning, match="timing cache .* could not be used"):
        TensorRTBackend(model, precision="fp32", batch=2, height=16, width=16)
    saved = timing.read_bytes()
    assert saved.startswith(b"FAKE-TC[")
    assert json.loads(saved[len(b"FAKE-TC") :]) == ["conv[2, 2, 16, 16]"]


def test_the_timing_cache_keeps_what_another_process_saved(
    fake_tensorrt, fake_cuda, model, engines
) -> None:
    """Another process saves its timing cache while we build: both keep their
    entries (the disk cache is merged into ours before ours is written)."""
    TensorRTBackend(model, precision="fp32", batch=1, height=16, width=16)
    (timing,) = engines.glob("timing-*.cache")

    def other_process_saves() -> None:
        timing.write_bytes(b'FAKE-TC["conv[1, 2, 16, 16]", "other process"]')

    fake_tensorrt.state.on_build = other_process_saves
    TensorRTBackend(model, precision="fp32", batch=2, height=16, width=16)
    entries = json.loads(timing.read_bytes()[len(b"FAKE-TC") :])
    assert entries == ["conv[1, 2, 16, 16]", "conv[2, 2, 16, 16]", "other process"]
    assert not list(engines.glob(".*.tmp"))  # written aside, then renamed


# -- batching and padding --------------------------------------------------------------
def test_batches_are_filled_and_split(fake_tensorrt, fake_cuda, model) -> None:
    backend = TensorRTBackend(model, precision="fp32", batch=4)
    x = _inputs(6)
    expected = fake_tensorrt.network_output(x, 1)
    np.testing.assert_array_equal(backend.infer(x), expected)  # 4 + 2 (padded)
    executions = fake_tensorrt.state.executions
    assert [shape for shape, _ in executions] == [(4, 2, 32, 48)] * 2
    assert {stream for _, stream in executions} == {backend._stream.cuda_stream}
    # run(): one frame for all planes, one DPM per plane; 5 planes = 4 + 1
    image, dpm = x[0, 0], x[:5, 1]
    planes = backend.run(image, dpm)
    np.testing.assert_allclose(planes, image + dpm, rtol=0, atol=1e-6)
    assert len(executions) == 4
    assert list(backend.engines) == [(4, 32, 48)]  # one engine for both
    with pytest.raises(InferenceError, match="multiples of 4"):
        backend.run(image[:30], dpm[:, :30])


def test_refocuser_pads_frames_for_the_engine_and_crops_back(
    fake_tensorrt, fake_cuda, model
) -> None:
    """37×50 frames go to a (4, 2, 40, 52) engine; the crop returns the frame's
    pixels: the fake engine adds the DPM channel to the image channel, so plane p
    is frame + scale · p / dpm_scale_um, exactly."""
    refocuser = Refocuser(model, backend="tensorrt", device="cuda", batch_size=4)
    assert refocuser.backend == "tensorrt" and str(refocuser.device) == "cuda:0"
    frame = _frame()
    planes = [-6.0, -3.0, 0.0, 1.5, 6.0]
    volume = refocuser.refocus(frame, planes)
    assert volume.shape == (5, *frame.shape)
    assert fake_tensorrt.state.builds == [(4, 2, 40, 52)]
    scale = refocuser.normalization.scale_of(frame.astype(np.float32))
    for plane, p in zip(volume, planes, strict=True):
        expected = frame + scale * p / refocuser.info.dpm_scale_um
        np.testing.assert_allclose(plane, expected, rtol=1e-5, atol=1e-2)


# -- versions ------------------------------------------------------------------------
def test_bf16_needs_tensorrt_10_6(fake_tensorrt, fake_cuda, model) -> None:
    assert check_tensorrt_version("bf16", "10.6.0.26") == "bf16"
    assert check_tensorrt_version("bf16", "11.0.0") == "bf16"
    assert check_tensorrt_version("fp16", "10.0.1") == "fp16"
    with pytest.raises(TensorRTBuildError) as info:
        check_tensorrt_version("bf16", "10.5.0.18")
    message = str(info.value)
    assert "\n" not in message and "10.5.0.18" in message
    assert 'pip install -U "tensorrt>=10.6"' in message and "fp16" in message
    fake_tensorrt.__version__ = "10.3.0"
    with pytest.raises(TensorRTBuildError, match=r"tensorrt>=10\.6"):
        TensorRTBackend(model, precision="bf16")


# -- backend choice and fallback -----------------------------------------------------
def test_auto_on_cuda_picks_tensorrt_when_importable(
    fake_tensorrt, fake_cuda, model, generators_on_cpu
) -> None:
    assert Refocuser(model, backend="auto", device="cuda").backend == "tensorrt"
    assert generators_on_cpu == []  # TensorRT runs without the torch generator


def test_auto_on_cuda_without_tensorrt_is_torch(
    fake_cuda, model, monkeypatch, generators_on_cpu
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    refocuser = Refocuser(model, backend="auto", device="cuda")
    assert refocuser.backend == "torch" and refocuser.backend_fallback is None
    assert generators_on_cpu == ["cuda:0"]


def test_auto_falls_back_to_torch_once_when_no_engine_can_be_built(
    fake_tensorrt, fake_cuda, model, generators_on_cpu
) -> None:
    fake_tensorrt.state.fail_build = "no implementation for node /Conv_3"
    refocuser = Refocuser(model, backend="auto", device="cuda", cuda_graphs=False)
    assert refocuser.backend == "tensorrt"  # engines are built on first use
    frame = _frame()
    planes = [-4.0, 0.0, 2.0]
    with pytest.warns(RuntimeWarning, match=r"/Conv_3.*Falling back to the torch"):
        volume = refocuser.refocus(frame, planes)
    assert refocuser.backend == "torch"
    assert "no implementation for node /Conv_3" in refocuser.backend_fallback
    assert generators_on_cpu == ["cuda:0"]  # loaded once, for the fallback
    by_torch = Refocuser(model, backend="torch").refocus(frame, planes)
    np.testing.assert_allclose(volume, by_torch, rtol=1e-5, atol=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        refocuser.refocus(frame + 1, planes)


def test_auto_falls_back_when_the_engine_is_needed_at_construction(
    fake_tensorrt, fake_cuda, model, generators_on_cpu
) -> None:
    fake_tensorrt.__version__ = "10.3.0"  # too old for bf16 graphs
    with pytest.warns(RuntimeWarning, match="Falling back"):
        refocuser = Refocuser(model, backend="auto", device="cuda", precision="bf16")
    assert refocuser.backend == "torch" and "10.6" in refocuser.backend_fallback


def test_explicit_tensorrt_does_not_fall_back(
    fake_tensorrt, fake_cuda, model, generators_on_cpu
) -> None:
    fake_tensorrt.state.fail_build = "out of memory"
    refocuser = Refocuser(model, backend="tensorrt", device="cuda")
    with pytest.raises(TensorRTBuildError, match=r"failed to build.*out of memory"):
        refocuser.refocus(_frame(), [0.0])
    assert refocuser.backend == "tensorrt" and refocuser.backend_fallback is None
    assert generators_on_cpu == []


def test_the_fallback_is_in_the_volume_metadata(
    fake_tensorrt, fake_cuda, model, generators_on_cpu
) -> None:
    from deepz import RefocuserProcessor

    fake_tensorrt.state.fail_build = "no implementation for node /Conv_3"
    processor = RefocuserProcessor(
        model, [-2.0, 0.0, 2.0], backend="auto", device="cuda", cuda_graphs=False
    )
    with pytest.warns(RuntimeWarning, match="Falling back"):
        processor.setup((37, 50), np.dtype(np.uint16), {"pixel_size_um": 0.325})
    described = processor.describe()
    assert described["backend"] == "torch" and described["device"] == "cuda:0"
    assert "/Conv_3" in described["backend_fallback"]
    json.dumps(described)  # plain data, as the metadata needs
