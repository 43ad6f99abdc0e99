"""TensorRT backend: cache keys, shape and precision policy, reduced-precision ONNX,
a clear error without TensorRT, and (GPU + TensorRT only) engines against torch.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import numpy as np
import pytest

from deepz_live.inference import (
    GeneratorConfig,
    InferenceError,
    ModelInfo,
    build_generator,
    import_tensorrt,
    load_model,
    psnr,
    save_model,
    sidecar_path,
    tensorrt_available,
)
from deepz_live.inference._tensorrt_build import profile_shapes
from deepz_live.inference._tensorrt_cache import engine_cache_key, engine_key_parts
from deepz_live.inference._tensorrt_export import engine_input_shape
from deepz_live.inference._tensorrt_support import check_precision

if TYPE_CHECKING:
    from pathlib import Path

torch = pytest.importorskip("torch")

KEY_ARGS = {
    "onnx_sha256": "ab" * 32,
    "trt_version": "10.13.0.35",
    "gpu_name": "NVIDIA H100 80GB HBM3",
    "compute_capability": (9, 0),
    "shape": (8, 2, 256, 256),
    "precision": "fp16",
}


def _save(path: Path, config: GeneratorConfig, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    generator = build_generator(config)
    with torch.no_grad():  # a random, non-trivial network (not the identity start)
        for p in generator.parameters():
            p.add_(0.05 * torch.randn_like(p))
    info = ModelInfo(
        name="tiny",
        generator=config.to_dict(),
        normalization={"offset": 100.0, "percentile": 99.5, "min_scale": 1.0},
        pixel_size_um=0.325,
        dz_range_um=6.0,
        dpm_scale_um=6.0,
        created="2026-11-21T00:00:00+00:00",
    )
    save_model(path, generator, info)
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    config = GeneratorConfig(base_width=4, depth=2, residual=False)
    return _save(folder / "tiny.safetensors", config)


@pytest.fixture
def no_tensorrt(monkeypatch):
    """Make ``import tensorrt`` fail as on a machine without it."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


# -- cache keys ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "other"),
    [
        ("onnx_sha256", "cd" * 32),
        ("trt_version", "11.0.0.1"),
        ("gpu_name", "NVIDIA H200"),
        ("compute_capability", (8, 9)),
        ("shape", (8, 2, 256, 512)),
        ("shape", (4, 2, 256, 256)),
        ("precision", "bf16"),
        ("precision", "fp32"),
    ],
)
def test_engine_cache_key_changes_with_each_ingredient(name, other) -> None:
    assert engine_cache_key(**{**KEY_ARGS, name: other}) != engine_cache_key(**KEY_ARGS)


def test_engine_cache_key_is_stable_and_the_sidecar_explains_it() -> None:
    key = engine_cache_key(**KEY_ARGS)
    assert len(key) == 64 and int(key, 16) >= 0  # a SHA-256 in hex: a file name
    # the same ingredients, spelled differently (list vs tuple, numpy ints)
    again = {
        **KEY_ARGS,
        "shape": [np.int64(8), 2, 256, 256],
        "compute_capability": [9, 0],
    }
    assert engine_cache_key(**again) == key
    # the sidecar (JSON) holds enough to recompute the key
    parts = json.loads(json.dumps(engine_key_parts(**KEY_ARGS)))
    major, minor = (int(v) for v in parts["compute_capability"].split("."))
    assert (
        engine_cache_key(
            parts["onnx_sha256"],
            parts["tensorrt"],
            parts["gpu"],
            (major, minor),
            parts["shape"],
            parts["precision"],
        )
        == key
    )


# -- shape and precision policy ----------------------------------------------------
def test_profile_is_one_fixed_shape() -> None:
    low, opt, high = profile_shapes([8, 2, 256, 320])
    assert low == opt == high == (8, 2, 256, 320)
    with pytest.raises(InferenceError):
        profile_shapes((8, 2, 256))
    with pytest.raises(InferenceError):
        profile_shapes((0, 2, 256, 256))


def test_engine_shape_is_the_padded_frame() -> None:
    unet = GeneratorConfig(base_width=4, depth=4)  # multiple of 16
    assert engine_input_shape(unet, 8, 500, 512) == (8, 2, 512, 512)
    assert engine_input_shape(unet, 1, 17, 16) == (1, 2, 32, 16)
    stack = GeneratorConfig.stack(6.0, 2.0, base_width=4, depth=2)
    assert engine_input_shape(stack, 1, 37, 50) == (1, 1, 40, 52)
    with pytest.raises(InferenceError, match="batch"):
        engine_input_shape(unet, 0, 64, 64)


def test_bf16_is_refused_before_ampere() -> None:
    with pytest.raises(InferenceError, match=r"8\.0.*Tesla T4 has 7\.5.*fp16"):
        check_precision("bf16", (7, 5), "Tesla T4")
    assert check_precision("bf16", (8, 0)) == "bf16"
    assert check_precision("bf16", (9, 0)) == "bf16"
    assert check_precision("fp16", (7, 5)) == "fp16"
    with pytest.raises(InferenceError, match="fp32, fp16, bf16"):
        check_precision("int8", (9, 0))


# -- without TensorRT ----------------------------------------------------------------
def test_missing_tensorrt_says_how_to_install_it_and_what_else_to_use(
    no_tensorrt,
) -> None:
    from deepz_live.inference._tensorrt_backend import TensorRTBackend

    assert not tensorrt_available()
    with pytest.raises(InferenceError) as info:
        import_tensorrt()
    message = str(info.value)
    assert "\n" not in message  # one paragraph, as the CLI prints it
    assert "pip install tensorrt" in message
    assert "NVIDIA" in message
    assert 'backend "torch"' in message and '"cuda"' in message
    assert 'backend "onnxruntime"' in message
    with pytest.raises(InferenceError, match="pip install tensorrt"):
        TensorRTBackend("default", device="cuda")


def test_cli_export_tensorrt_without_tensorrt_exits_1(
    no_tensorrt, tmp_path, capsys
) -> None:
    from deepz._cli import main

    out = tmp_path / "default.engine"
    with pytest.raises(SystemExit) as info:
        main(["export", "default", "--format", "tensorrt", "--out", str(out),
              "--size", "256", "256", "--precision", "fp16"])  # fmt: skip
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "pip install tensorrt" in err and "onnxruntime" in err
    assert "Traceback" not in err
    assert not out.exists()


# -- reduced-precision ONNX ----------------------------------------------------------
def test_fp16_onnx_holds_fp16_weights_and_matches_torch(
    tiny_model, tmp_path, monkeypatch
) -> None:
    """The fp16 graph: float16 weights, float32 I/O, torch's numbers to fp16 accuracy.

    ONNX Runtime on the CPU runs it (it computes float16 nodes in float32 between
    casts, so weights and activations are rounded to float16 as on a GPU). float16
    keeps 11 significant bits: one rounding is ≤ 2^-11 ≈ 4.9e-4 relative. A dozen
    layers of such roundings stay well inside 5e-3 of the output range; the fp32
    export agrees with torch to ~1e-6, so the error seen here is fp16's.
    """
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from deepz_live.inference._export import PRECISION_METADATA_KEY, cached_onnx

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = cached_onnx(tiny_model, precision="fp16")
    assert path.name.startswith("tiny-") and path.name.endswith("-fp16.onnx")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)

    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    resize_scales = {n.input[2] for n in proto.graph.node if n.op_type == "Resize"}
    weights = {
        t.name: t.data_type
        for t in proto.graph.initializer
        if t.data_type in float_types and t.name not in resize_scales
    }
    # Resize's scales are float32 by the ONNX spec; all other weights are float16
    assert set(weights.values()) == {onnx.TensorProto.FLOAT16}
    kernels = [n.input[1] for n in proto.graph.node if n.op_type == "Conv"]
    assert kernels and all(weights.get(k) == onnx.TensorProto.FLOAT16 for k in kernels)
    for value in (*proto.graph.input, *proto.graph.output):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta[PRECISION_METADATA_KEY] == "fp16"
    assert '"name": "tiny"' in meta["deepz-live"]

    rng = np.random.default_rng(1)
    x = np.stack(
        [rng.uniform(0, 3, (3, 32, 48)), rng.uniform(-1, 1, (3, 32, 48))], axis=1
    ).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["y"], {"x": x})[0]
    generator, _ = load_model(tiny_model)
    with torch.inference_mode():
        ref = generator(torch.from_numpy(x)).numpy()
    assert got.dtype == np.float32 and got.shape == ref.shape
    span = float(ref.max() - ref.min())
    error = float(np.abs(got - ref).max())
    assert 1e-6 * span < error <= 5e-3 * span
    assert psnr(got, ref, data_range=span) >= 50.0


def test_bf16_onnx_passes_the_full_checker_at_opset_22(
    tiny_model, tmp_path, monkeypatch
) -> None:
    """What TensorRT ≥ 10.6 parses for bf16: an opset-22 graph, valid by ONNX's
    full check (types and shapes inferred), bfloat16 weights, float32 I/O."""
    onnx = pytest.importorskip("onnx")
    from deepz_live.inference._export import PRECISION_METADATA_KEY, cached_onnx

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = cached_onnx(tiny_model, precision="bf16")
    assert path.name.endswith("-bf16.onnx")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    opsets = {o.domain: o.version for o in proto.opset_import}
    assert opsets[""] == 22
    resize_scales = {n.input[2] for n in proto.graph.node if n.op_type == "Resize"}
    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.BFLOAT16}
    weights = {
        t.name: t.data_type
        for t in proto.graph.initializer
        if t.data_type in float_types and t.name not in resize_scales
    }
    assert set(weights.values()) == {onnx.TensorProto.BFLOAT16}
    kernels = [n.input[1] for n in proto.graph.node if n.op_type == "Conv"]
    assert kernels and all(weights[k] == onnx.TensorProto.BFLOAT16 for k in kernels)
    for value in (*proto.graph.input, *proto.graph.output):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta[PRECISION_METADATA_KEY] == "bf16"


# -- on a GPU with TensorRT ------------------------------------------------------------
@pytest.fixture
def engine_cache(tmp_path, monkeypatch) -> Path:
    pytest.importorskip("tensorrt")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA GPU")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "deepz-live" / "tensorrt"


@pytest.mark.gpu
def test_tensorrt_engines_match_torch_and_are_cached(tiny_model, engine_cache) -> None:
    from deepz_live.inference._tensorrt_backend import TensorRTBackend

    generator, _ = load_model(tiny_model)
    rng = np.random.default_rng(2)
    x = np.stack(
        [rng.uniform(0, 3, (6, 64, 96)), rng.uniform(-1, 1, (6, 64, 96))], axis=1
    ).astype(np.float32)
    with torch.inference_mode():
        ref = generator(torch.from_numpy(x)).numpy()
    span = float(ref.max() - ref.min())

    # 6 inputs through a batch-4 engine: one full batch, one padded
    fp16 = TensorRTBackend(tiny_model, precision="fp16", batch=4, height=64, width=96)
    got = fp16.infer(x)
    assert got.shape == ref.shape and got.dtype == np.float32
    assert psnr(got, ref, data_range=span) >= 50.0
    # run(): one frame, one DPM per plane, as the Refocuser calls it
    same_frame = x.copy()
    same_frame[:, 0] = x[0, 0]
    planes = fp16.run(x[0, 0], x[:, 1])
    expected = fp16.infer(same_frame)[:, 0]
    np.testing.assert_allclose(planes, expected, rtol=0, atol=1e-5 * span)

    fp32 = TensorRTBackend(tiny_model, precision="fp32", batch=4)
    assert np.abs(fp32.infer(x) - ref).max() <= 1e-4 * span  # TF32 off

    engines = sorted(engine_cache.glob("*.engine"))
    assert len(engines) == 2  # fp16 and fp32 at (4, 2, 64, 96)
    for engine in engines:
        sidecar = json.loads(sidecar_path(engine).read_text())
        assert sidecar["key"] == engine.stem
        assert sidecar["shape"] == [4, 2, 64, 96]
        assert sidecar["gpu"] == torch.cuda.get_device_name()
    stamps = {e: e.stat().st_mtime_ns for e in engines}
    again = TensorRTBackend(tiny_model, precision="fp16", batch=4, height=64, width=96)
    # the same engine, reloaded, not rebuilt
    np.testing.assert_allclose(again.infer(x), got, rtol=0, atol=1e-5 * span)
    assert {e: e.stat().st_mtime_ns for e in engines} == stamps

    # a corrupt cached engine is rebuilt, with a warning
    fp16_engine = next(e for e in engines if fp16.engines[(4, 64, 96)]["key"] == e.stem)
    fp16_engine.write_bytes(b"not an engine")
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        rebuilt = TensorRTBackend(tiny_model, batch=4, height=64, width=96)
    assert psnr(rebuilt.infer(x), ref, data_range=span) >= 50.0


@pytest.mark.gpu
def test_tensorrt_stack_model_and_bf16(tmp_path, engine_cache) -> None:
    from deepz_live.inference._tensorrt_backend import TensorRTBackend
    from deepz_live.inference._tensorrt_support import GpuIdentity

    config = GeneratorConfig.stack(6.0, 2.0, base_width=4, depth=2, residual=False)
    model = _save(tmp_path / "stack.safetensors", config)
    generator, _ = load_model(model)
    image = np.random.default_rng(3).uniform(0, 3, (64, 64)).astype(np.float32)
    with torch.inference_mode():
        ref = generator(torch.from_numpy(image)[None, None])[0].numpy()
    span = float(ref.max() - ref.min())
    stack = TensorRTBackend(model, precision="fp16").run_stack(image)
    assert stack.shape == (len(config.planes_um), 64, 64)
    assert psnr(stack, ref, data_range=span) >= 50.0

    if GpuIdentity.of("cuda").compute_capability < (8, 0):
        with pytest.raises(InferenceError, match="bf16"):
            TensorRTBackend(model, precision="bf16")
        return
    # bfloat16 keeps 8 significant bits (2^-8 ≈ 3.9e-3): 16× fp16's rounding
    bf16 = TensorRTBackend(model, precision="bf16").run_stack(image)
    assert psnr(bf16, ref, data_range=span) >= 35.0


@pytest.mark.gpu
def test_cli_export_tensorrt_writes_engine_and_sidecar(
    tiny_model, engine_cache, tmp_path
) -> None:
    from deepz._cli import main

    out = tmp_path / "tiny.engine"
    try:
        main(["export", str(tiny_model), "--format", "tensorrt", "--out", str(out),
              "--size", "62", "96", "--batch", "2"])  # fmt: skip
    except SystemExit as exc:
        assert not exc.code
    sidecar = json.loads((tmp_path / "tiny.engine.json").read_text())
    assert sidecar["shape"] == [2, 2, 64, 96]  # 62 rounded up to a multiple of 4
    assert sidecar["frame_size"] == [62, 96]
    assert sidecar["precision"] == "fp16"
    assert out.stat().st_size > 1000
