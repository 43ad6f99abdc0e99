"""Exporting a Deep-Z generator to ONNX (for ONNX Runtime and TensorRT).

The graph takes ``x`` (N, C, H, W) — the normalized image and, for ``"deepz-unet"``
models, the DPM channel — and returns ``y`` (N, K, H, W); batch and spatial sizes are
dynamic (H and W multiples of what the U-Net needs). The model's JSON description is
embedded as ONNX metadata (``deepz-live``), so an exported file explains itself like
the model file does.

Precision (``precision=``) lives in the graph, because TensorRT 11 builds strongly
typed networks only (it has no FP16/BF16 builder flags): ``"fp16"`` and ``"bf16"``
graphs hold their weights in that type and compute in it, while ``x`` and ``y`` stay
float32 with a cast after the input and before the output. Callers thus feed and read
float32 whatever the precision (the casts cost nothing next to the convolutions), and
normalized frames (~0 to a few) are far inside FP16's range (max 65504).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from deepz_live.inference._errors import InferenceError
from deepz_live.inference._modelfile import METADATA_KEY, load_model, resolve_model_path
from deepz_live.inference._networks import GeneratorConfig, required_multiple

#: the largest H and W (pixels) an exported graph accepts
MAX_SIZE = 4096
#: arithmetic precisions an exported graph can have
PRECISIONS = ("fp32", "fp16", "bf16")
#: ONNX metadata key that records the graph's precision
PRECISION_METADATA_KEY = "deepz-live-precision"
# Opset 18 is read by every TensorRT 10.x parser and by ONNX Runtime; bfloat16
# convolutions need opset 22 (opset 18's Conv does not allow the type).
_DEFAULT_OPSET = 18
_BF16_OPSET = 22


def check_precision_name(precision: str) -> str:
    """Return ``precision`` if it is one of `PRECISIONS`, else raise InferenceError."""
    if precision not in PRECISIONS:
        raise InferenceError(
            f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}."
        )
    return precision


def export_onnx(
    model: str | Path,
    out: str | Path,
    *,
    opset: int | None = None,
    precision: str = "fp32",
) -> Path:
    """Export ``model`` (a bundled name or a file) to an ONNX file at ``out``.

    Parameters
    ----------
    model : str or Path
        A bundled model name or a model file.
    out : str or Path
        The ONNX file to write (atomically: written aside, then renamed).
    opset : int, optional
        ONNX opset; default 18 (22 for ``"bf16"``, the first opset whose
        convolutions take bfloat16).
    precision : {"fp32", "fp16", "bf16"}
        Type of the weights and of the arithmetic inside the graph. The input ``x``
        and output ``y`` are float32 for every precision (see the module notes).
    """
    check_precision_name(precision)
    try:
        import onnx
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise InferenceError(
            'ONNX export needs the onnx extra: pip install "deepz-live[onnx]".'
        ) from exc
    generator, info = load_model(model)
    generator.eval()
    if precision != "fp32":
        generator = _reduced_precision(generator, precision)
    if opset is None:
        opset = _BF16_OPSET if precision == "bf16" else _DEFAULT_OPSET
    config = GeneratorConfig.from_dict(info.generator)
    multiple = required_multiple(config)
    steps = MAX_SIZE // multiple
    example = torch.zeros(2, config.in_channels, 2 * multiple, 3 * multiple)
    dims = {
        0: torch.export.Dim("batch", min=1, max=1024),
        2: multiple * torch.export.Dim("h", min=1, max=steps),
        3: multiple * torch.export.Dim("w", min=1, max=steps),
    }
    program = torch.onnx.export(
        generator,
        (example,),
        input_names=["x"],
        output_names=["y"],
        dynamic_shapes={"x": dims},
        opset_version=opset,
        dynamo=True,
        verbose=False,
    )
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = info.to_json()
    if precision != "fp32":
        entry = proto.metadata_props.add()
        entry.key = PRECISION_METADATA_KEY
        entry.value = precision
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    onnx.save(proto, str(tmp))
    os.replace(tmp, out_path)
    return out_path


def _reduced_precision(generator: Any, precision: str) -> Any:
    """``generator`` with its weights in ``precision``, wrapped to keep float32 I/O."""
    import torch

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]

    class ReducedPrecision(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.generator = generator.to(dtype)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.generator(x.to(dtype)).to(torch.float32)

    return ReducedPrecision().eval()


def cached_onnx(model: str | Path, *, precision: str = "fp32") -> Path:
    """The ONNX export of ``model``, made once and kept in the user's cache folder.

    Keyed by the model file's SHA-256, so a changed model is exported again; graphs
    of another precision than ``"fp32"`` get a ``-fp16`` / ``-bf16`` suffix.
    """
    check_precision_name(precision)
    path = resolve_model_path(model)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    suffix = "" if precision == "fp32" else f"-{precision}"
    name = f"{Path(path).stem}-{digest}{suffix}.onnx"
    target = root / "deepz-live" / "onnx" / name
    if not target.exists():
        export_onnx(path, target, precision=precision)
    return target
