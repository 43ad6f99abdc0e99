"""inference._runtime: device choice, torch's CUDA settings, cache folder, writes."""

from __future__ import annotations

import os

import pytest

from deepz_live.inference import InferenceError, pick_device
from deepz_live.inference._runtime import (
    atomic_write,
    cuda_inference_flags,
    user_cache_dir,
    version_tuple,
)

torch = pytest.importorskip("torch")


def _flags() -> tuple[bool, bool, str]:
    return (
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
        torch.get_float32_matmul_precision(),
    )


NEWER_API = hasattr(torch.backends.cudnn, "conv")  # recent torch: fp32_precision


def _precisions() -> tuple[str, ...]:
    b = torch.backends
    return (
        b.fp32_precision,
        b.cudnn.fp32_precision,
        b.cudnn.conv.fp32_precision,
        b.cudnn.rnn.fp32_precision,
        b.cuda.matmul.fp32_precision,
        b.mkldnn.matmul.fp32_precision,
    )


@pytest.fixture
def restore_flags():
    """Put torch's TF32/cuDNN settings back as they were (both of torch's APIs)."""
    legacy = _flags()
    newer = _precisions() if NEWER_API else ()
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = legacy[:2]
    torch.set_float32_matmul_precision(legacy[2])
    if NEWER_API:
        b = torch.backends
        settings = (b, b.cudnn, b.cudnn.conv, b.cudnn.rnn, b.cuda.matmul)
        for setting, value in zip((*settings, b.mkldnn.matmul), newer, strict=True):
            setting.fp32_precision = value
        assert _precisions() == newer


@pytest.mark.parametrize(
    "user", [(True, False, "high"), (False, True, "highest"), (True, True, "medium")]
)
def test_cuda_inference_flags_are_scoped(restore_flags, user) -> None:
    torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = user[:2]
    torch.set_float32_matmul_precision(user[2])
    before = _precisions() if NEWER_API else ()
    with cuda_inference_flags():
        assert _flags() == (False, True, "highest")  # IEEE fp32, autotuned cuDNN
        assert not torch.backends.cuda.matmul.allow_tf32
    assert _flags() == user
    assert (_precisions() if NEWER_API else ()) == before
    with pytest.raises(ZeroDivisionError), cuda_inference_flags():
        1 / 0  # noqa: B018
    assert _flags() == user


@pytest.mark.skipif(not NEWER_API, reason="this torch has no fp32_precision")
@pytest.mark.parametrize(
    "setting",
    [
        ("cudnn", "tf32"),  # a parent: children left at "none" would inherit TF32
        ("generic", "tf32"),
        ("conv", "ieee"),  # legacy getters raise on this mix; none is read here
        ("matmul", "tf32"),
    ],
)
def test_cuda_inference_flags_with_torchs_newer_api(restore_flags, setting) -> None:
    b = torch.backends
    target = {
        "cudnn": b.cudnn,
        "generic": b,
        "conv": b.cudnn.conv,
        "matmul": b.cuda.matmul,
    }[setting[0]]
    target.fp32_precision = setting[1]
    before = _precisions()
    with cuda_inference_flags():
        assert b.cudnn.conv.fp32_precision == "ieee"
        assert b.cuda.matmul.fp32_precision == "ieee"
        # consistent: the legacy getters (and cuBLAS's own check) do not raise
        assert _flags() == (False, True, "highest")
    assert _precisions() == before


def test_pick_device_on_the_cpu() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert pick_device("auto") == torch.device("cpu")
        with pytest.raises(InferenceError, match="no CUDA GPU"):
            pick_device("cuda")


def test_pick_device_names_the_gpu(fake_cuda) -> None:
    assert pick_device("cuda") == torch.device("cuda", 0)
    assert pick_device("auto") == torch.device("cuda", 0)
    assert pick_device("cuda:1") == torch.device("cuda", 1)
    fake_cuda.current = 1
    assert pick_device("cuda") == torch.device("cuda", 1)


def test_train_and_refocuser_pick_devices_alike() -> None:
    from deepz_live.inference import _refocuser, _train

    assert _train.pick_device is pick_device
    assert _refocuser.pick_device is pick_device


@pytest.mark.parametrize("value", ["", "relative/cache"])
def test_user_cache_dir_ignores_an_empty_or_relative_xdg_cache_home(
    value, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", value)
    expected = tmp_path / "home" / ".cache" / "deepz-live" / "onnx"
    assert user_cache_dir("onnx") == expected
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir("tensorrt") == tmp_path / "xdg" / "deepz-live" / "tensorrt"


def test_tensorrt_cache_dir_follows_the_same_rule(tmp_path, monkeypatch) -> None:
    from deepz_live.inference._tensorrt_cache import tensorrt_cache_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert tensorrt_cache_dir() == tmp_path / ".cache" / "deepz-live" / "tensorrt"


def test_atomic_write_goes_through_a_file_named_after_the_process(
    tmp_path, monkeypatch
) -> None:
    renamed = []
    replace = os.replace

    def record(src, dst):
        renamed.append((os.fspath(src), os.fspath(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", record)
    target = tmp_path / "sub" / "graph.onnx"
    assert atomic_write(target, b"one") == target
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    (src, dst), _ = renamed
    assert src == str(tmp_path / "sub" / f".graph.onnx.{os.getpid()}.tmp")
    assert dst == str(target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["graph.onnx"]


def test_version_tuple() -> None:
    assert version_tuple("10.13.0.35") == (10, 13, 0, 35)
    assert version_tuple("2.13.0+cpu") == (2, 13, 0)
    assert version_tuple("2.6.0a0+git1234") == (2, 6, 0)
    assert version_tuple("2.5") >= (2, 5) > version_tuple("2.4.1")
    assert version_tuple("unknown") == ()
