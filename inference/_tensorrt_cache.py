"""The TensorRT engine cache: keys, sidecars, timing caches, load-or-build.

Engines are not portable across TensorRT versions or GPU architectures, so they are
cached in ``$XDG_CACHE_HOME/deepz-live/tensorrt/`` (default
``~/.cache/deepz-live/tensorrt/``) under `engine_cache_key`: a SHA-256 over the
ONNX file's hash, the TensorRT version, the GPU name and compute capability, the
input shape, the precision and the build recipe's version. Each ``<key>.engine`` has
a ``<key>.engine.json`` sidecar that says what the key was made of. Files are
written aside (under a name with the process id) and renamed into place; an engine
that fails to deserialize is rebuilt with a warning. One timing cache per TensorRT
version and GPU (``timing-*.cache``) is shared by every build
(`inference._tensorrt_build`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepz_live.inference._export import check_precision_name
from deepz_live.inference._runtime import atomic_write, user_cache_dir
from deepz_live.inference._tensorrt_build import (
    DEFAULT_WORKSPACE_BYTES,
    ENGINE_FORMAT,
    build_serialized_engine,
)
from deepz_live.inference._tensorrt_support import (
    TensorRTBuildError,
    import_tensorrt,
    tensorrt_logger,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from deepz_live.inference._tensorrt_support import GpuIdentity

__all__ = [
    "EngineStore",
    "engine_cache_key",
    "engine_key_parts",
    "sidecar_path",
    "tensorrt_cache_dir",
]

_log = logging.getLogger(__name__)


def engine_key_parts(
    onnx_sha256: str,
    trt_version: str,
    gpu_name: str,
    compute_capability: tuple[int, int],
    shape: Sequence[int],
    precision: str,
) -> dict[str, Any]:
    """What an engine cache key is made of, as JSON-ready data (the sidecar's core)."""
    major, minor = (int(v) for v in compute_capability)
    return {
        "engine_format": ENGINE_FORMAT,
        "onnx_sha256": str(onnx_sha256),
        "tensorrt": str(trt_version),
        "gpu": str(gpu_name),
        "compute_capability": f"{major}.{minor}",
        "shape": [int(d) for d in shape],
        "precision": check_precision_name(precision),
    }


def engine_cache_key(
    onnx_sha256: str,
    trt_version: str,
    gpu_name: str,
    compute_capability: tuple[int, int],
    shape: Sequence[int],
    precision: str,
) -> str:
    """SHA-256 (hex) naming the engine built from these ingredients.

    Any change — another ONNX graph, TensorRT version, GPU, shape or precision —
    gives another key, because engines are not portable across any of them.
    """
    parts = engine_key_parts(
        onnx_sha256, trt_version, gpu_name, compute_capability, shape, precision
    )
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def tensorrt_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/deepz-live/tensorrt`` (default ``~/.cache/...``; an empty
    or relative ``XDG_CACHE_HOME`` counts as unset)."""
    return user_cache_dir("tensorrt")


def sidecar_path(engine_path: str | Path) -> Path:
    """The JSON description written next to an engine file (``<engine>.json``)."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def _timing_cache_path(
    cache_dir: Path, trt_version: str, gpu_name: str, compute_capability: tuple
) -> Path:
    gpu = re.sub(r"[^A-Za-z0-9.]+", "-", gpu_name).strip("-") or "gpu"
    major, minor = compute_capability
    return cache_dir / f"timing-trt{trt_version}-{gpu}-sm{major}{minor}.cache"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_sidecar(engine_path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(sidecar_path(engine_path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class EngineStore:
    """Loads engines from the cache folder or builds them, for one GPU."""

    def __init__(
        self,
        gpu: GpuIdentity,
        *,
        cache_dir: str | Path | None = None,
        workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    ) -> None:
        self.trt = import_tensorrt()
        self.gpu = gpu
        self.cache_dir = Path(cache_dir) if cache_dir else tensorrt_cache_dir()
        self.workspace_bytes = workspace_bytes
        self.runtime = self.trt.Runtime(tensorrt_logger())
        self._onnx_sha: dict[Path, str] = {}

    def engine(
        self,
        onnx_path: Path,
        shape: Sequence[int],
        precision: str,
        *,
        describe: dict[str, Any] | None = None,
    ) -> tuple[Any, bytes, dict[str, Any]]:
        """Deserialized engine, its bytes and its description, cached or built."""
        import torch

        sha = self._onnx_sha.get(onnx_path)
        if sha is None:
            sha = self._onnx_sha[onnx_path] = _sha256_file(onnx_path)
        parts = engine_key_parts(
            sha,
            self.trt.__version__,
            self.gpu.name,
            self.gpu.compute_capability,
            shape,
            precision,
        )
        key = engine_cache_key(
            sha,
            self.trt.__version__,
            self.gpu.name,
            self.gpu.compute_capability,
            shape,
            precision,
        )
        path = self.cache_dir / f"{key}.engine"
        description = {
            **parts,
            "key": key,
            "input": "x",
            "output": "y",
            "onnx": str(onnx_path),
            **(describe or {}),
        }
        with torch.cuda.device(self.gpu.index):
            if path.exists():
                blob = path.read_bytes()
                engine = self._deserialize(blob)
                if engine is not None:
                    return engine, blob, _read_sidecar(path) or description
                warnings.warn(
                    f"The cached TensorRT engine {path} could not be loaded (corrupt "
                    "or truncated); rebuilding it.",
                    RuntimeWarning,
                    stacklevel=3,
                )
            _log.info("building a TensorRT engine for %s (%s)", tuple(shape), precision)
            blob = build_serialized_engine(
                onnx_path,
                shape,
                precision=precision,
                timing_cache=_timing_cache_path(
                    self.cache_dir,
                    self.trt.__version__,
                    self.gpu.name,
                    self.gpu.compute_capability,
                ),
                workspace_bytes=self.workspace_bytes,
            )
            engine = self._deserialize(blob)
            if engine is None:
                raise TensorRTBuildError(
                    f"TensorRT {self.trt.__version__} built an engine for "
                    f"{tuple(shape)} but cannot load it: "
                    + ("; ".join(tensorrt_logger().errors) or "no details given")
                )
            description["created"] = datetime.datetime.now(
                datetime.timezone.utc
            ).isoformat(timespec="seconds")
            atomic_write(path, blob)
            atomic_write(sidecar_path(path), json.dumps(description, indent=2).encode())
        return engine, blob, description

    def _deserialize(self, blob: bytes) -> Any:
        tensorrt_logger().errors.clear()
        try:
            return self.runtime.deserialize_cuda_engine(blob)
        except Exception as exc:  # some versions raise instead of returning None
            _log.warning("TensorRT could not deserialize an engine: %s", exc)
            return None
