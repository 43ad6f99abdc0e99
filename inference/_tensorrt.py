"""TensorRT engines for Deep-Z generators: building, caching, running.

Written against TensorRT's documented Python API of 10.x and 11.x (ONNX parser →
strongly typed network → builder config with one optimization profile → serialized
engine → ``IExecutionContext.execute_async_v3``). ``tensorrt`` (and torch) are
imported inside functions only, so importing this module costs nothing and a machine
without TensorRT gets one clear `InferenceError` (`import_tensorrt`), never a
traceback.

Precision. TensorRT 11 builds strongly typed networks only (the FP16/BF16 builder
flags are gone), so the precision is chosen in the ONNX graph
(`inference._export.export_onnx` with ``precision=``) and the network is created
with ``STRONGLY_TYPED`` on 10.x as well: one path for both. The graph's input and
output stay float32 (casts inside), so the host side is the same for every
precision. ``"bf16"`` needs compute capability 8.0 or newer (`check_precision`) and
TensorRT 10.6 or newer, whose ONNX parser reads the bfloat16 convolutions of opset
22 (`check_tensorrt_version`). The TF32 builder flag (on by default) is cleared, so
float32 means IEEE float32, as in the torch backend
(`inference._runtime.cuda_inference_flags`).

Shapes. Fixed shapes are faster than dynamic ones, so every engine is built for one
input shape ``(batch, C, H, W)``: its single optimization profile has
min = opt = max (`profile_shapes`). A new frame size gets its own engine, built (or
loaded from the cache) the first time it is seen.

Cache. Engines are not portable across TensorRT versions or GPU architectures, so
they are cached in ``$XDG_CACHE_HOME/deepz-live/tensorrt/`` (default
``~/.cache/deepz-live/tensorrt/``) under `engine_cache_key`: a SHA-256 over the
ONNX file's hash, the TensorRT version, the GPU name and compute capability, the
input shape and the precision. Each ``<key>.engine`` has a ``<key>.engine.json``
sidecar that says what the key was made of. Files are written aside (under a name
with the process id) and renamed into place; an engine that fails to deserialize is
rebuilt with a warning. One timing cache per TensorRT version and GPU
(``timing-*.cache``) makes rebuilds and new shapes faster; before it is saved, the
cache on disk (another process may have saved its own meanwhile) is merged into it
(``ITimingCache.combine``), so no process's entries are lost.

Failures to make an engine (the ONNX export, parsing, building, loading what was
built) raise `TensorRTBuildError`, an `InferenceError`: the `Refocuser` with
``backend="auto"`` falls back to torch on it.

Threads. A `TensorRTBackend` owns its CUDA stream, device buffers and execution
contexts; call it from one thread (the inference worker).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepz_live.inference._errors import InferenceError
from deepz_live.inference._export import (
    MAX_SIZE,
    PRECISIONS,
    cached_onnx,
    check_precision_name,
)
from deepz_live.inference._modelfile import read_model_info, resolve_model_path
from deepz_live.inference._networks import required_multiple
from deepz_live.inference._runtime import atomic_write, user_cache_dir, version_tuple

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType

    from deepz_live.inference._networks import GeneratorConfig

__all__ = [
    "DEFAULT_WORKSPACE_BYTES",
    "ENGINE_FORMAT",
    "PRECISIONS",
    "GpuIdentity",
    "TensorRTBackend",
    "TensorRTBuildError",
    "check_precision",
    "check_tensorrt_version",
    "engine_cache_key",
    "engine_input_shape",
    "engine_key_parts",
    "export_tensorrt",
    "import_tensorrt",
    "profile_shapes",
    "sidecar_path",
    "tensorrt_available",
    "tensorrt_cache_dir",
    "tensorrt_missing_message",
]

_log = logging.getLogger(__name__)

#: Builder workspace (scratch memory for tactics) limit, bytes.
DEFAULT_WORKSPACE_BYTES = 2 << 30
#: Version of the build recipe; part of every cache key, so a changed recipe
#: (flags, profile policy) never reuses engines built the old way.
#: 2: TF32 cleared for every precision.
ENGINE_FORMAT = 2
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


def profile_shapes(
    shape: Sequence[int],
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The (min, opt, max) shapes of an engine's optimization profile.

    Fixed shapes are faster than dynamic ones (TensorRT picks tactics for exactly
    one shape), so all three are ``shape``: one engine per acquisition shape.
    """
    fixed = tuple(int(d) for d in shape)
    if len(fixed) != 4 or min(fixed) < 1:
        raise InferenceError(
            f"An engine input shape is (batch, channels, height, width) with "
            f"positive sizes, got {tuple(shape)}."
        )
    return fixed, fixed, fixed


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


# -- building ----------------------------------------------------------------------
@functools.cache
def _logger() -> Any:
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


def _parser_error_text(error: Any) -> str:
    try:
        where = f" (node {error.node_name()!r}, {error.node_operator()})"
    except Exception:  # older bindings lack node_name/node_operator
        where = ""
    try:
        return f"{error.desc()}{where}"
    except Exception:
        return str(error)


def build_serialized_engine(
    onnx_path: str | Path,
    shape: Sequence[int],
    *,
    precision: str,
    timing_cache: Path | None = None,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
) -> bytes:
    """Build a serialized engine from an ONNX file for one fixed input shape.

    Runs on the current CUDA device. ``precision`` is that of the ONNX graph (the
    network is strongly typed: the graph's types decide); TF32 is switched off so
    float32 means float32. ``timing_cache`` is read if present and, merged with
    what is on disk by then, written back after the build. Raises
    `TensorRTBuildError` when the graph cannot be parsed or built.
    """
    trt = import_tensorrt()
    check_tensorrt_version(precision, trt.__version__)
    logger = _logger()
    logger.errors.clear()
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:  # 10.x: required; 11.x: always on, flag ignored
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        problems = [
            _parser_error_text(parser.get_error(i)) for i in range(parser.num_errors)
        ]
        raise TensorRTBuildError(
            f"TensorRT {trt.__version__} could not parse {onnx_path}: "
            + ("; ".join(problems) or "no details given")
        )
    if network.num_inputs != 1:
        raise TensorRTBuildError(
            f"{onnx_path} has {network.num_inputs} inputs; a Deep-Z graph has one."
        )
    input_name = network.get_input(0).name

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    if tf32 is not None:  # on by default; float32 layers then round to 10 bits
        config.clear_flag(tf32)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *profile_shapes(shape))
    config.add_optimization_profile(profile)
    cache = _load_timing_cache(config, timing_cache)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        details = "; ".join(logger.errors) or "see the TensorRT log"
        raise TensorRTBuildError(
            f"TensorRT {trt.__version__} failed to build an engine for input "
            f"{tuple(shape)} from {onnx_path}: {details}"
        )
    if cache is not None and timing_cache is not None:
        _save_timing_cache(config, timing_cache)
    return bytes(serialized)


def _save_timing_cache(config: Any, path: Path) -> None:
    """Write the config's timing cache to ``path``, keeping what is there already.

    Another process may have saved its cache since ours was loaded: its entries are
    merged into ours first (``ITimingCache.combine``; on conflicts ours win), then
    the whole is written atomically. A file TensorRT cannot combine (corrupt, or
    another version) is replaced.
    """
    ours = config.get_timing_cache()
    try:
        blob = path.read_bytes() if path.exists() else b""
    except OSError:
        blob = b""
    if blob:
        try:
            theirs = config.create_timing_cache(blob)
            # combine(input_cache, ignore_mismatch): entries of the same GPU only
            merged = theirs is not None and ours.combine(theirs, False)
        except Exception as exc:  # some versions raise on a bad buffer
            _log.debug("could not read the timing cache on disk: %s", exc)
            merged = False
        if not merged:
            _log.info("replacing the timing cache %s (could not merge it)", path)
    try:
        atomic_write(path, bytes(ours.serialize()))
    except OSError as exc:
        _log.warning("could not save the TensorRT timing cache: %s", exc)


def _load_timing_cache(config: Any, path: Path | None) -> Any:
    """Attach the timing cache at ``path`` (or a fresh one) to a builder config.

    A cache file that TensorRT rejects (truncated, or from another version or GPU)
    costs only build time: it is replaced by a fresh cache, with a warning.
    """
    if path is None:
        return None
    try:
        blob = path.read_bytes() if path.exists() else b""
    except OSError:
        blob = b""
    if blob:
        reason = "rejected by TensorRT"
        try:
            cache = config.create_timing_cache(blob)
            if cache is not None and config.set_timing_cache(
                cache, ignore_mismatch=False
            ):
                return cache
        except Exception as exc:
            reason = str(exc)
        warnings.warn(
            f"The TensorRT timing cache {path} could not be used ({reason}: corrupt, "
            "or from another TensorRT/GPU); starting a new one.",
            RuntimeWarning,
            stacklevel=3,
        )
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _read_sidecar(engine_path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(sidecar_path(engine_path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class _EngineStore:
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
        self.runtime = self.trt.Runtime(_logger())
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
                    + ("; ".join(_logger().errors) or "no details given")
                )
            description["created"] = datetime.datetime.now(
                datetime.timezone.utc
            ).isoformat(timespec="seconds")
            atomic_write(path, blob)
            atomic_write(sidecar_path(path), json.dumps(description, indent=2).encode())
        return engine, blob, description

    def _deserialize(self, blob: bytes) -> Any:
        _logger().errors.clear()
        try:
            return self.runtime.deserialize_cuda_engine(blob)
        except Exception as exc:  # some versions raise instead of returning None
            _log.warning("TensorRT could not deserialize an engine: %s", exc)
            return None


# -- export ------------------------------------------------------------------------
def _onnx_for_tensorrt(model: str | Path, precision: str) -> Path:
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
    onnx_path = _onnx_for_tensorrt(model, precision)
    store = _EngineStore(gpu, cache_dir=cache_dir, workspace_bytes=workspace_bytes)
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


# -- running -----------------------------------------------------------------------
class _Slot:
    """One engine with its execution context and preallocated buffers."""

    def __init__(self, engine: Any, trt: Any, shape: tuple, device: Any) -> None:
        import torch

        self.engine = engine
        self.context = engine.create_execution_context()
        if self.context is None:
            raise InferenceError(
                f"TensorRT could not create an execution context for {shape} (out of "
                "GPU memory?)."
            )
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [
            n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT
        ]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise InferenceError(
                f"Expected an engine with one input and one output, got {names}."
            )
        self.input, self.output = inputs[0], outputs[0]
        if not self.context.set_input_shape(self.input, shape):
            raise InferenceError(f"The engine does not accept input shape {shape}.")
        out_shape = tuple(int(d) for d in self.context.get_tensor_shape(self.output))
        dtypes = {
            getattr(trt.DataType, "FLOAT", None): torch.float32,
            getattr(trt.DataType, "HALF", None): torch.float16,
            getattr(trt.DataType, "BF16", None): torch.bfloat16,
        }
        in_dtype = dtypes.get(engine.get_tensor_dtype(self.input))
        out_dtype = dtypes.get(engine.get_tensor_dtype(self.output))
        if in_dtype is None or out_dtype is None:
            raise InferenceError(
                "The engine's input/output types are not float32/16: "
                f"{engine.get_tensor_dtype(self.input)}, "
                f"{engine.get_tensor_dtype(self.output)}."
            )
        self.x = torch.empty(shape, dtype=in_dtype, device=device)
        self.y = torch.empty(out_shape, dtype=out_dtype, device=device)
        # float32 staging in page-locked memory: asynchronous copies, no extra copy
        self.x_host = torch.zeros(shape, dtype=torch.float32, pin_memory=True)
        self.y_host = torch.zeros(out_shape, dtype=torch.float32, pin_memory=True)
        self.x_np: np.ndarray = self.x_host.numpy()
        self.y_np: np.ndarray = self.y_host.numpy()
        self.context.set_tensor_address(self.input, self.x.data_ptr())
        self.context.set_tensor_address(self.output, self.y.data_ptr())


class TensorRTBackend:
    """Runs a Deep-Z generator with TensorRT on one NVIDIA GPU.

    Engines are fixed-shape: one per ``(batch, H, W)``, built (or loaded from the
    cache folder, see the module notes) when a shape is first used, with its own
    execution context and device buffers allocated once. All work goes to the
    backend's own CUDA stream; each call returns when its results are on the host.

    Parameters
    ----------
    model : str or Path
        A bundled model name or a model file.
    device : str or torch.device
        ``"cuda"`` or ``"cuda:N"``.
    precision : {"fp16", "bf16", "fp32"}
        Arithmetic precision of the engine (set in the exported ONNX graph).
        ``"bf16"`` needs compute capability ≥ 8.0.
    batch : int
        Network inputs per call for `run` and `infer` (planes per pass for
        ``"deepz-unet"`` models). Fewer are padded up to it, more are split.
        `run_stack` always uses batch 1.
    height, width : int, optional
        Padded frame size to build an engine for now (multiples of the U-Net's
        multiple); other sizes are built on first use.
    cache_dir : str or Path, optional
        Engine cache folder (default: `tensorrt_cache_dir`).
    workspace_bytes : int
        Builder workspace limit.

    Notes
    -----
    Not thread-safe: one inference worker owns the backend, its stream and buffers.
    """

    name = "tensorrt"

    def __init__(
        self,
        model: str | Path,
        *,
        device: Any = "cuda",
        precision: str = "fp16",
        batch: int = 8,
        height: int | None = None,
        width: int | None = None,
        cache_dir: str | Path | None = None,
        workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    ) -> None:
        self._trt = import_tensorrt()
        import torch

        check_precision_name(precision)
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise InferenceError(f"batch must be an integer ≥ 1, got {batch!r}.")
        self.gpu = GpuIdentity.of(device)
        self.device = torch.device("cuda", self.gpu.index)
        check_precision(precision, self.gpu.compute_capability, self.gpu.name)
        self.info = read_model_info(model)
        self.config = self.info.generator_config
        self.multiple = required_multiple(self.config)
        self.precision = precision
        self.batch = batch
        self._model = model
        self._onnx = _onnx_for_tensorrt(model, precision)
        self._store = _EngineStore(
            self.gpu, cache_dir=cache_dir, workspace_bytes=workspace_bytes
        )
        with torch.cuda.device(self.device):
            self._stream = torch.cuda.Stream(self.device)
        self._slots: dict[tuple[int, int, int], _Slot] = {}
        #: descriptions (sidecar contents) of the engines in use, by (batch, H, W)
        self.engines: dict[tuple[int, int, int], dict[str, Any]] = {}
        if (height is None) != (width is None):
            raise InferenceError("Give both height and width, or neither.")
        if height is not None and width is not None:
            first_batch = 1 if self.config.in_channels == 1 else batch
            self._slot(first_batch, height, width)

    # -- public ------------------------------------------------------------------
    def infer(self, x: np.ndarray) -> np.ndarray:
        """Run the network: ``x`` (n, C, H, W) float32 -> (n, K, H, W) float32.

        H and W must be multiples of the U-Net's multiple; any n works (the
        engine's batch is filled up or the input is split).
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise InferenceError(
                f"Expected input (n, {self.config.in_channels}, H, W), got {x.shape}."
            )
        slot = self._slot(self.batch, x.shape[2], x.shape[3])
        out = np.empty((x.shape[0], *slot.y_np.shape[1:]), np.float32)
        for start in range(0, x.shape[0], self.batch):
            m = min(self.batch, x.shape[0] - start)
            slot.x_np[:m] = x[start : start + m]
            self._execute(slot)
            out[start : start + m] = slot.y_np[:m]
        return out

    def run(self, image: np.ndarray, dpm: np.ndarray) -> np.ndarray:
        """``"deepz-unet"``: (H, W) image and (n, H, W) DPM channel -> (n, H, W)."""
        if self.config.in_channels != 2:
            raise InferenceError(
                f"{self.info.name!r} takes {self.config.in_channels} input channel(s), "
                "not [image, DPM]; use run_stack."
            )
        slot = self._slot(self.batch, *image.shape)
        n = dpm.shape[0]
        out = np.empty((n, *image.shape), np.float32)
        slot.x_np[:, 0] = image  # the same frame for every plane of the batch
        for start in range(0, n, self.batch):
            m = min(self.batch, n - start)
            slot.x_np[:m, 1] = dpm[start : start + m]
            self._execute(slot)
            out[start : start + m] = slot.y_np[:m, 0]
        return out

    def run_stack(self, image: np.ndarray) -> np.ndarray:
        """``"deepz-stack"``: (H, W) image -> (K, H, W), one plane per channel."""
        if self.config.in_channels != 1:
            raise InferenceError(
                f"{self.info.name!r} takes [image, DPM] input; use run(image, dpm)."
            )
        slot = self._slot(1, *image.shape)
        slot.x_np[0, 0] = image
        self._execute(slot)
        return slot.y_np[0].copy()

    def __repr__(self) -> str:
        return (
            f"TensorRTBackend({self.info.name!r}, {self.precision}, "
            f"batch={self.batch}, {self.gpu.name} "
            f"sm{self.gpu.compute_capability[0]}{self.gpu.compute_capability[1]}, "
            f"engines={sorted(self._slots)})"
        )

    # -- internals ---------------------------------------------------------------
    def _slot(self, batch: int, height: int, width: int) -> _Slot:
        key = (int(batch), int(height), int(width))
        slot = self._slots.get(key)
        if slot is not None:
            return slot
        if height % self.multiple or width % self.multiple:
            raise InferenceError(
                f"TensorRT engines take frames padded to multiples of {self.multiple}; "
                f"got {height}×{width} (see inference._apply.pad_to_multiple)."
            )
        shape = engine_input_shape(self.config, batch, height, width)
        engine, _, description = self._store.engine(
            self._onnx,
            shape,
            self.precision,
            describe={
                "model": self.info.name,
                "model_file": str(resolve_model_path(self._model)),
            },
        )
        import torch

        with torch.cuda.device(self.device):
            slot = _Slot(engine, self._trt, shape, self.device)
        self._slots[key] = slot
        self.engines[key] = description
        return slot

    def _execute(self, slot: _Slot) -> None:
        import torch

        with torch.cuda.device(self.device), torch.cuda.stream(self._stream):
            slot.x.copy_(slot.x_host, non_blocking=True)
            if not slot.context.execute_async_v3(self._stream.cuda_stream):
                raise InferenceError(
                    "TensorRT failed to run the engine: "
                    + ("; ".join(_logger().errors) or "no details given")
                )
            slot.y_host.copy_(slot.y, non_blocking=True)
        self._stream.synchronize()
