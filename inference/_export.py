"""Exporting a Deep-Z generator to ONNX (for ONNX Runtime, and later TensorRT).

The graph takes ``x`` (N, 2, H, W) — normalized image and DPM channels — and returns
``y`` (N, 1, H, W); batch and spatial sizes are dynamic (H and W multiples of what
the U-Net needs). The model's JSON description is embedded as ONNX metadata
(``deepz-live``), so an exported file explains itself like the model file does.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from inference._errors import InferenceError
from inference._modelfile import METADATA_KEY, load_model, resolve_model_path
from inference._networks import GeneratorConfig, required_multiple

#: the largest H and W (pixels) an exported graph accepts
MAX_SIZE = 4096


def export_onnx(model: str | Path, out: str | Path, *, opset: int = 18) -> Path:
    """Export ``model`` (a bundled name or a file) to an ONNX file at ``out``."""
    try:
        import onnx
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise InferenceError(
            'ONNX export needs the onnx extra: pip install "deepz-live[onnx]".'
        ) from exc
    generator, info = load_model(model)
    generator.eval()
    multiple = required_multiple(GeneratorConfig.from_dict(info.generator))
    steps = MAX_SIZE // multiple
    example = torch.zeros(2, 2, 2 * multiple, 3 * multiple)
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
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    onnx.save(proto, str(tmp))
    os.replace(tmp, out_path)
    return out_path


def cached_onnx(model: str | Path) -> Path:
    """The ONNX export of ``model``, made once and kept in the user's cache folder.

    Keyed by the model file's SHA-256, so a changed model is exported again.
    """
    path = resolve_model_path(model)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    target = root / "deepz-live" / "onnx" / f"{Path(path).stem}-{digest}.onnx"
    if not target.exists():
        export_onnx(path, target)
    return target
