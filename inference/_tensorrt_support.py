"""TensorRT itself: importing it, what it and the GPU can build, and its logger.

``tensorrt`` (and torch) are imported inside functions only, so importing the
TensorRT modules of this package costs nothing and a machine without TensorRT gets
one clear `InferenceError` (`import_tensorrt`), never a traceback.

Precision. ``"bf16"`` needs compute capability 8.0 or newer (`check_precision`) and
TensorRT 10.6 or newer, whose ONNX parser reads the bfloat16 convolutions of opset
22 (`check_tensorrt_version`). How a precision gets into an engine is
`inference._tensorrt_build`'s business.

Failures to make an engine (the ONNX export, parsing, building, loading what was
built) raise `TensorRTBuildError`, an `InferenceError`: the `Refocuser` with
``backend="auto"`` falls back to torch on it.

The rest of the TensorRT backend: `inference._tensorrt_build` (one engine from an
ONNX file), `inference._tensorrt_cache` (the engine cache), `inference._tensorrt_export`
(an engine file for a model) and `inference._tensorrt_backend` (running engines).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deepz_live.inference._errors import InferenceError
from deepz_live.inference._export import check_precision_name
from deepz_live.inference._runtime import version_tuple

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "BF16_MIN_COMPUTE_CAPABILITY",
    "BF16_MIN_TENSORRT",
    "GpuIdentity",
    "TensorRTBuildError",
    "check_precision",
    "check_tensorrt_version",
    "import_tensorrt",
    "tensorrt_available",
    "tensorrt_logger",
    "tensorrt_missing_message",
]

_log = logging.getLogger(__name__)


#: bfloat16 arithmetic needs Ampere (compute capability 8.0) or newer.
BF16_MIN_COMPUTE_CAPABILITY = (8, 0)
#: bfloat16 graphs (opset 22) need this TensorRT's ONNX parser or a newer one.
BF16_MIN_TENSORRT = (10, 6)


class TensorRTBuildError(InferenceError):
    """No engine could be made: ONNX export, parsing, building or loading failed."""


# -- availability ------------------------------------------------------------------
def tensorrt_missing_message(reason: str = "") -> str:
    """The one-paragraph explanation given when ``tensorrt`` cannot be imported."""
    why = f" ({reason})" if reason else ""
    return (
        "TensorRT is not installed here: the Python package 'tensorrt' cannot be "
        f"imported{why}. TensorRT runs only on NVIDIA GPUs; on a machine with one and "
        "a recent NVIDIA driver, install it with `pip install tensorrt` (its wheels "
        "come from NVIDIA's package index, pypi.nvidia.com) or "
        '`pip install "deepz-live[tensorrt]"`. Without TensorRT, use backend "torch" '
        'with device "cuda" on a GPU, or backend "onnxruntime" on the CPU '
        "(`deepz export --format onnx` writes a graph for other runtimes)."
    )


def import_tensorrt() -> ModuleType:
    """Import ``tensorrt``, or raise `InferenceError` saying how to get it."""
    try:
        import tensorrt
    except (ImportError, OSError) as exc:
        # OSError: the wheel is there but its CUDA libraries are not loadable
        raise InferenceError(tensorrt_missing_message(str(exc))) from exc
    return tensorrt


def tensorrt_available() -> bool:
    """True when ``import tensorrt`` works."""
    try:
        import_tensorrt()
    except InferenceError:
        return False
    return True


# -- pure policy -------------------------------------------------------------------
def check_precision(
    precision: str,
    compute_capability: tuple[int, int],
    gpu_name: str = "this GPU",
) -> str:
    """Return ``precision`` if the GPU can run it, else raise `InferenceError`.

    ``"fp32"`` and ``"fp16"`` run on every GPU TensorRT 10/11 supports; ``"bf16"``
    needs compute capability 8.0 (Ampere) or newer.
    """
    check_precision_name(precision)
    major, minor = (int(v) for v in compute_capability)
    if precision == "bf16" and (major, minor) < BF16_MIN_COMPUTE_CAPABILITY:
        need = ".".join(map(str, BF16_MIN_COMPUTE_CAPABILITY))
        raise InferenceError(
            f"bf16 needs a GPU of compute capability {need} or newer (Ampere, e.g. "
            f"A100, RTX 30xx, and later); {gpu_name} has {major}.{minor}. Use "
            "precision fp16 (same speed, more mantissa bits; normalized frames fit "
            "its range) or fp32."
        )
    return precision


def check_tensorrt_version(precision: str, trt_version: str) -> str:
    """Return ``precision`` if this TensorRT can build it, else raise.

    bf16 graphs are exported at opset 22 (the first whose convolutions take
    bfloat16); TensorRT's ONNX parser reads them from 10.6 on. Raises
    `TensorRTBuildError` (one line, naming the fix).
    """
    check_precision_name(precision)
    if precision == "bf16" and version_tuple(trt_version)[:2] < BF16_MIN_TENSORRT:
        need = ".".join(map(str, BF16_MIN_TENSORRT))
        raise TensorRTBuildError(
            f"bf16 engines need TensorRT {need} or newer (earlier ONNX parsers do not "
            f"read opset 22's bfloat16 convolutions); this is TensorRT {trt_version}: "
            f'pip install -U "tensorrt>={need}", or use precision fp16.'
        )
    return precision


# -- the GPU -----------------------------------------------------------------------
@dataclass(frozen=True)
class GpuIdentity:
    """The CUDA device an engine is built for (engines only run on its kind)."""

    index: int
    name: str
    compute_capability: tuple[int, int]

    @classmethod
    def of(cls, device: Any) -> GpuIdentity:
        """Identify a torch CUDA device (``"cuda"``, ``"cuda:1"``, torch.device)."""
        import torch

        device = torch.device(device)
        if device.type != "cuda":
            raise InferenceError(
                f"TensorRT runs on NVIDIA GPUs; got device {str(device)!r}. Use "
                "device 'cuda' (or 'cuda:N'), or backend 'onnxruntime' on the CPU."
            )
        if not torch.cuda.is_available():
            raise InferenceError(
                "TensorRT needs a CUDA GPU, but torch sees none (no NVIDIA driver, or "
                "a CPU-only torch build). Use backend 'onnxruntime' on the CPU."
            )
        index = torch.cuda.current_device() if device.index is None else device.index
        props = torch.cuda.get_device_properties(index)
        return cls(index, str(props.name), (int(props.major), int(props.minor)))


# -- the logger -------------------------------------------------------------------
@functools.cache
def tensorrt_logger() -> Any:
    """One TensorRT logger per process: errors are kept for messages, the rest logged.

    TensorRT wants the logger to outlive every builder, runtime and engine made with
    it, hence a process-wide one.
    """
    trt = import_tensorrt()
    severity = trt.ILogger.Severity
    errors = {int(severity.INTERNAL_ERROR), int(severity.ERROR)}
    warning = int(severity.WARNING)

    class Logger(trt.ILogger):  # type: ignore[name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, level: Any, msg: str) -> None:
            # builds send thousands of INFO/VERBOSE lines: drop them at once
            if int(level) in errors:
                self.errors.append(msg)
                _log.error("TensorRT: %s", msg)
            elif int(level) == warning:
                _log.warning("TensorRT: %s", msg)

    return Logger()
