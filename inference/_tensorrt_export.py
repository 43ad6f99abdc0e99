"""A TensorRT engine for a model: its input shape, its ONNX graph, `export_tensorrt`.

The model-level side of engine making, shared by `export_tensorrt` (an engine file
for ``deepz export --format tensorrt``) and `inference._tensorrt_backend`: which
input shape frames of a size need (`engine_input_shape`; a new frame size gets its
own engine) and the ONNX graph engines are built from (`onnx_for_tensorrt`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deepz_live.inference._errors import InferenceError
from deepz_live.inference._export import MAX_SIZE, cached_onnx, check_precision_name
from deepz_live.inference._modelfile import read_model_info, resolve_model_path
from deepz_live.inference._networks import required_multiple
from deepz_live.inference._runtime import atomic_write
from deepz_live.inference._tensorrt_build import DEFAULT_WORKSPACE_BYTES
from deepz_live.inference._tensorrt_cache import EngineStore, sidecar_path
from deepz_live.inference._tensorrt_support import (
    GpuIdentity,
    TensorRTBuildError,
    check_precision,
    check_tensorrt_version,
    import_tensorrt,
)

if TYPE_CHECKING:
    from deepz_live.inference._networks import GeneratorConfig

__all__ = ["engine_input_shape", "export_tensorrt", "onnx_for_tensorrt"]


def engine_input_shape(
    config: GeneratorConfig, batch: int, height: int, width: int
) -> tuple[int, int, int, int]:
    """The engine input ``(batch, C, H, W)`` for frames of ``height × width``.

    H and W are rounded up to the multiple the U-Net needs, as the Refocuser pads
    frames (`inference._apply.pad_to_multiple`) before they reach a backend.
    """
    for name, value in (("batch", batch), ("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise InferenceError(f"{name} must be an integer, got {value!r}.")
        if value < 1:
            raise InferenceError(f"{name} must be ≥ 1, got {value}.")
    multiple = required_multiple(config)
    padded = tuple(-(-int(v) // multiple) * multiple for v in (height, width))
    if max(padded) > MAX_SIZE:
        raise InferenceError(
            f"Frames of {height}×{width} exceed the exported graph's limit of "
            f"{MAX_SIZE}×{MAX_SIZE} pixels."
        )
    return (int(batch), config.in_channels, padded[0], padded[1])


def onnx_for_tensorrt(model: str | Path, precision: str) -> Path:
    """The cached ONNX graph engines are built from; failures are build failures."""
    check_tensorrt_version(precision, import_tensorrt().__version__)
    try:
        return cached_onnx(model, precision=precision)
    except TensorRTBuildError:
        raise
    except InferenceError as exc:
        raise TensorRTBuildError(
            f"TensorRT builds engines from the ONNX export, which failed: {exc}"
        ) from exc


def export_tensorrt(
    model: str | Path,
    out: str | Path,
    *,
    height: int,
    width: int,
    precision: str = "fp16",
    batch: int | None = None,
    device: str = "cuda",
    cache_dir: str | Path | None = None,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
) -> Path:
    """Build (or take from the cache) an engine for ``model`` and write it to ``out``.

    The engine takes ``x`` (batch, C, H, W) float32 and returns ``y`` (batch, K, H,
    W) float32, H and W being ``height``/``width`` rounded up to the U-Net's
    multiple. ``batch`` defaults to 8 for ``"deepz-unet"`` models (planes per call)
    and 1 for ``"deepz-stack"`` models (one frame per call). A JSON sidecar
    ``<out>.json`` records the model, shape, precision, TensorRT version and GPU:
    the engine runs only with that TensorRT version on that kind of GPU.
    """
    import_tensorrt()
    check_precision_name(precision)
    info = read_model_info(model)
    config = info.generator_config
    if batch is None:
        batch = 1 if config.in_channels == 1 else 8
    shape = engine_input_shape(config, batch, height, width)
    gpu = GpuIdentity.of(device)
    check_precision(precision, gpu.compute_capability, gpu.name)
    onnx_path = onnx_for_tensorrt(model, precision)
    store = EngineStore(gpu, cache_dir=cache_dir, workspace_bytes=workspace_bytes)
    _, blob, description = store.engine(
        onnx_path,
        shape,
        precision,
        describe={"model": info.name, "model_file": str(resolve_model_path(model))},
    )
    out_path = Path(out)
    description = {
        **description,
        "engine": out_path.name,
        "frame_size": [int(height), int(width)],
    }
    atomic_write(out_path, blob)
    atomic_write(sidecar_path(out_path), json.dumps(description, indent=2).encode())
    return out_path
