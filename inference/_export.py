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
import inspect
import json
from importlib import metadata
from pathlib import Path
from typing import Any

from deepz_live.inference._errors import InferenceError
from deepz_live.inference._modelfile import METADATA_KEY, load_model, resolve_model_path
from deepz_live.inference._networks import GeneratorConfig, required_multiple
from deepz_live.inference._runtime import atomic_write, user_cache_dir, version_tuple

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
#: Version of the export recipe (wrapper, dims, options, metadata); part of the
#: cache key of `cached_onnx`, so a changed recipe never reuses an old export.
EXPORT_FORMAT = 2
#: The dynamo exporter (``dynamo=True``) with ``dynamic_shapes`` needs torch 2.5.
MIN_TORCH = (2, 5)


def default_opset(precision: str) -> int:
    """The ONNX opset an export of ``precision`` gets: 18, or 22 for ``"bf16"``."""
    return _BF16_OPSET if check_precision_name(precision) == "bf16" else _DEFAULT_OPSET


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
    if version_tuple(torch.__version__)[:2] < MIN_TORCH:
        need = ".".join(map(str, MIN_TORCH))
        raise InferenceError(
            f"ONNX export needs torch {need} or newer (its dynamo exporter with "
            f"dynamic shapes); this is torch {torch.__version__}: "
            f'pip install -U "torch>={need}".'
        )
    generator, info = load_model(model)
    generator.eval()
    if precision != "fp32":
        generator = _reduced_precision(generator, precision)
    if opset is None:
        opset = default_opset(precision)
    config = GeneratorConfig.from_dict(info.generator)
    multiple = required_multiple(config)
    steps = MAX_SIZE // multiple
    example = torch.zeros(2, config.in_channels, 2 * multiple, 3 * multiple)
    dims = {
        0: torch.export.Dim("batch", min=1, max=1024),
        2: multiple * torch.export.Dim("h", min=1, max=steps),
        3: multiple * torch.export.Dim("w", min=1, max=steps),
    }
    options: dict[str, Any] = {}
    if "optimize" in inspect.signature(torch.onnx.export).parameters:
        # the graph optimizer (constant folding, fusions) is on by default only
        # from torch 2.7; ask for it so that every torch ≥ 2.6 exports alike
        options["optimize"] = True
    program = torch.onnx.export(
        generator,
        (example,),
        input_names=["x"],
        output_names=["y"],
        dynamic_shapes={"x": dims},
        opset_version=opset,
        dynamo=True,
        verbose=False,
        **options,
    )
    if program is None:  # dynamo=True returns the program; never None
        raise InferenceError("torch.onnx.export returned no ONNX program.")
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = info.to_json()
    if precision != "fp32":
        entry = proto.metadata_props.add()
        entry.key = PRECISION_METADATA_KEY
        entry.value = precision
    onnx.checker.check_model(proto)  # a broken graph is not written, nor cached
    return atomic_write(out, proto.SerializeToString())


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


def onnx_cache_key(
    model_sha256: str,
    *,
    precision: str,
    opset: int,
    torch_version: str,
    onnxscript_version: str,
) -> str:
    """SHA-256 (hex) of what an export depends on: the model file, the precision,
    the opset, the export recipe (`EXPORT_FORMAT`) and the exporter's versions.

    torch and onnxscript translate the network into ONNX, so an upgrade of either
    exports again rather than reusing a graph the old versions made.
    """
    parts = {
        "export_format": EXPORT_FORMAT,
        "model_sha256": str(model_sha256),
        "precision": check_precision_name(precision),
        "opset": int(opset),
        "torch": str(torch_version),
        "onnxscript": str(onnxscript_version),
    }
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def cached_onnx(
    model: str | Path, *, precision: str = "fp32", opset: int | None = None
) -> Path:
    """The ONNX export of ``model``, made once and kept in the user's cache folder.

    The file lives in ``$XDG_CACHE_HOME/deepz-live/onnx/`` (default
    ``~/.cache/...``), named ``<model>-<key>[-fp16|-bf16].onnx`` with the key of
    `onnx_cache_key`: a changed model file, precision, opset, export recipe or
    torch/onnxscript version exports again.
    """
    import torch

    check_precision_name(precision)
    if opset is None:
        opset = default_opset(precision)
    path = resolve_model_path(model)
    key = onnx_cache_key(
        hashlib.sha256(Path(path).read_bytes()).hexdigest(),
        precision=precision,
        opset=opset,
        torch_version=torch.__version__,
        onnxscript_version=_installed_version("onnxscript"),
    )
    suffix = "" if precision == "fp32" else f"-{precision}"
    target = user_cache_dir("onnx") / f"{Path(path).stem}-{key[:16]}{suffix}.onnx"
    if not target.exists():
        export_onnx(path, target, precision=precision, opset=opset)
    return target


def _installed_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"
