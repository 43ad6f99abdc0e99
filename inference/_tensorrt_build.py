"""Building one TensorRT engine from an ONNX file, for one fixed input shape.

Written against TensorRT's documented Python API of 10.x and 11.x: ONNX parser →
strongly typed network → builder config with one optimization profile → serialized
engine (`build_serialized_engine`). Where engines are kept and when one is built is
`inference._tensorrt_cache`'s business.

Precision. TensorRT 11 builds strongly typed networks only (the FP16/BF16 builder
flags are gone), so the precision is chosen in the ONNX graph
(`inference._export.export_onnx` with ``precision=``) and the network is created
with ``STRONGLY_TYPED`` on 10.x as well: one path for both. The graph's input and
output stay float32 (casts inside), so the host side is the same for every
precision. The TF32 builder flag (on by default) is cleared, so float32 means IEEE
float32, as in the torch backend (`inference._runtime.cuda_inference_flags`).

Shapes. Fixed shapes are faster than dynamic ones, so every engine is built for one
input shape ``(batch, C, H, W)``: its single optimization profile has
min = opt = max (`profile_shapes`).

Timing cache. A timing cache file makes rebuilds and new shapes faster; before it is
saved, the cache on disk (another process may have saved its own meanwhile) is
merged into it (``ITimingCache.combine``), so no process's entries are lost.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

from deepz_live.inference._errors import InferenceError
from deepz_live.inference._runtime import atomic_write
from deepz_live.inference._tensorrt_support import (
    TensorRTBuildError,
    check_tensorrt_version,
    import_tensorrt,
    tensorrt_logger,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = [
    "DEFAULT_WORKSPACE_BYTES",
    "ENGINE_FORMAT",
    "build_serialized_engine",
    "profile_shapes",
]

_log = logging.getLogger(__name__)


#: Builder workspace (scratch memory for tactics) limit, bytes.
DEFAULT_WORKSPACE_BYTES = 2 << 30
#: Version of the build recipe; part of every cache key, so a changed recipe
#: (flags, profile policy) never reuses engines built the old way.
#: 2: TF32 cleared for every precision.
ENGINE_FORMAT = 2


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
    logger = tensorrt_logger()
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
