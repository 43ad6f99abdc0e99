"""`Refocuser`: a Deep-Z model ready to turn frames into virtual stacks.

Load a model once, then call `Refocuser.refocus` (a flat stack of planes) or
`Refocuser.refocus_surface` (a tilted or curved surface) per frame. Frames of any size
and dtype are accepted: they are normalized exactly as in training, reflect-padded to
the size the network needs, and the output is cropped back and returned as float32 in
the input's intensity units. Network inputs are allocated once per frame shape and
plane count and reused.

Backends: ``torch`` (CPU, or CUDA with ``device="cuda"``), ``onnxruntime`` (CPU;
the model is exported to ONNX once and cached, see `inference._export.cached_onnx`)
and ``tensorrt`` (NVIDIA GPUs; engines built per frame size and cached, see
`inference._tensorrt_backend`; written against TensorRT's documented API, not yet
run on a GPU by this project).
``backend="auto"`` picks ONNX Runtime on the CPU when it is installed (measured faster
than torch there: 1.00 vs 0.73 volumes/s at 256² × 21 planes on this project's 2-core
machine), else torch; on CUDA it picks TensorRT when ``tensorrt`` can be imported,
else torch. When that TensorRT cannot make an engine (`TensorRTBuildError`: export,
parse or build failed), ``auto`` falls back to torch on the same GPU, warns once and
records why in `Refocuser.backend_fallback`; an explicit ``backend="tensorrt"``
raises instead.

On CUDA the torch backend runs in fp32, fp16 or bf16 (``precision=``), under
`inference._runtime.cuda_inference_flags` (fp32 is IEEE float32, no TF32, as in
TensorRT; cuDNN autotunes its algorithms for the fixed shapes), and replays one
CUDA graph per input shape, captured on the backend's own GPU.

Only the torch backend loads the generator into torch; the others read the model's
description and build their runtime from the exported graph.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from deepz_live.inference._apply import NetworkRunner, apply_generator
from deepz_live.inference._errors import InferenceError, ModelQualityWarning
from deepz_live.inference._export import check_precision_name
from deepz_live.inference._modelfile import (
    DEFAULT_MODEL_NAME,
    check_finite_weights,
    load_model,
    read_model_info,
)
from deepz_live.inference._networks import GeneratorConfig, required_multiple
from deepz_live.inference._normalize import Normalization
from deepz_live.inference._runtime import cuda_inference_flags, pick_device

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from numpy.typing import ArrayLike

BACKENDS = ("torch", "onnxruntime", "tensorrt")


def _auto_backend(device: Any) -> str:
    """On CUDA: TensorRT when importable, else torch. On the CPU: ONNX Runtime when
    installed, else torch."""
    if device.type == "cuda":
        from deepz_live.inference._tensorrt_support import tensorrt_available

        return "tensorrt" if tensorrt_available() else "torch"
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is not None:
        return "onnxruntime"
    return "torch"


class _TorchBackend:
    """Runs the generator with torch, reusing one input tensor per batch shape.

    On the CPU: float32, channels-last. On CUDA: the chosen precision (weights and
    activations in fp16/bf16; inputs are normalized, far inside FP16's range),
    channels-last, and one CUDA graph per input shape: the first call of a shape
    records the network's kernels, later calls replay them without Python or
    launch overhead (``cuda_graphs=False`` runs eagerly instead).

    Every CUDA call runs with the backend's device made current
    (``torch.cuda.device``) and under `cuda_inference_flags`:
    ``torch.cuda.graph`` captures on the current device, so without it a model on
    ``cuda:1`` would be captured (or not) on ``cuda:0``. Warm-up and capture use
    one side stream of that device; capture errors only on this thread's unsafe
    calls (``capture_error_mode="thread_local"``): the worker thread owns the
    model, other threads may use CUDA meanwhile.
    """

    name = "torch"

    def __init__(
        self, generator: Any, device: Any, precision: str, cuda_graphs: bool
    ) -> None:
        import torch

        self.device = device
        self.dtype = {
            "fp32": torch.float32,
            "fp16": torch.float16,
            "bf16": torch.bfloat16,
        }[precision]
        self.generator = generator.to(
            dtype=self.dtype, memory_format=torch.channels_last
        )
        self.use_graphs = bool(cuda_graphs and device.type == "cuda")
        self.buffers: dict[tuple[int, int, int, int], Any] = {}
        self.graphs: dict[tuple[int, int, int, int], tuple[Any, Any]] = {}
        self._side_stream: Any = None

    def _scope(self) -> contextlib.ExitStack:
        """No autograd; on CUDA also this device current and `cuda_inference_flags`."""
        import torch

        scope = contextlib.ExitStack()
        scope.enter_context(torch.inference_mode())
        if self.device.type == "cuda":
            scope.enter_context(torch.cuda.device(self.device))
            scope.enter_context(cuda_inference_flags())
        return scope

    def _buffer(self, n: int, channels: int, height: int, width: int) -> Any:
        import torch

        key = (n, channels, height, width)
        buffer = self.buffers.get(key)
        if buffer is None:
            buffer = torch.empty(key, device=self.device, dtype=self.dtype)
            buffer = buffer.to(memory_format=torch.channels_last)
            self.buffers[key] = buffer
        return buffer

    def _forward(self, x: Any) -> Any:
        """The generator on the buffer ``x``; replays a CUDA graph when enabled.

        Called inside `_scope`: on CUDA, ``self.device`` is the current device.
        """
        if not self.use_graphs:
            return self.generator(x)
        key = tuple(x.shape)
        recorded = self.graphs.get(key)
        if recorded is None:
            recorded = self.graphs[key] = self._record(x)
        graph, output = recorded
        graph.replay()
        return output

    def _record(self, x: Any) -> tuple[Any, Any]:
        import torch

        if self._side_stream is None:
            self._side_stream = torch.cuda.Stream(self.device)
        side = self._side_stream
        # warm up on the side stream (cuDNN benchmarks and picks its algorithms,
        # the allocator settles), then capture on it
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self.generator(x)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
            output = self.generator(x)
        return graph, output

    def run(self, image: np.ndarray, dpm: np.ndarray) -> np.ndarray:
        """(H, W) normalized image and (n, H, W) DPM channel -> (n, H, W) output."""
        import torch

        n = dpm.shape[0]
        with self._scope():
            x = self._buffer(n, 2, *image.shape)
            x[:, 0].copy_(torch.from_numpy(image).expand(n, *image.shape))
            x[:, 1].copy_(torch.from_numpy(np.ascontiguousarray(dpm)))
            return self._forward(x)[:, 0].float().cpu().numpy()

    def run_stack(self, image: np.ndarray) -> np.ndarray:
        """(H, W) normalized image -> (K, H, W): the planes of a stack model."""
        import torch

        with self._scope():
            x = self._buffer(1, 1, *image.shape)
            x[0, 0].copy_(torch.from_numpy(image))
            return self._forward(x)[0].float().cpu().numpy()


class _OnnxRuntimeBackend:
    """Runs the exported ONNX graph with ONNX Runtime on the CPU."""

    name = "onnxruntime"

    def __init__(self, model: str | Path, threads: int | None) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise InferenceError(
                "The onnxruntime backend needs ONNX Runtime: "
                'pip install "deepz-live[onnx]", or use backend="torch".'
            ) from exc
        from deepz_live.inference._export import cached_onnx

        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        self.session = onnxruntime.InferenceSession(
            str(cached_onnx(model)), options, providers=["CPUExecutionProvider"]
        )
        self.buffers: dict[tuple[int, int, int, int], np.ndarray] = {}

    def _buffer(self, n: int, channels: int, height: int, width: int) -> np.ndarray:
        key = (n, channels, height, width)
        x = self.buffers.get(key)
        if x is None:
            x = self.buffers[key] = np.empty(key, np.float32)
        return x

    def run(self, image: np.ndarray, dpm: np.ndarray) -> np.ndarray:
        x = self._buffer(dpm.shape[0], 2, *image.shape)
        x[:, 0] = image
        x[:, 1] = dpm
        return self.session.run(["y"], {"x": x})[0][:, 0]

    def run_stack(self, image: np.ndarray) -> np.ndarray:
        x = self._buffer(1, 1, *image.shape)
        x[0, 0] = image
        return self.session.run(["y"], {"x": x})[0][0]


def _as_float_array(values: Any, what: str, dtype: type) -> np.ndarray:
    """``values`` as a float array, or an `InferenceError` naming ``what``."""
    try:
        return np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        text = str(exc).rstrip(".")
        raise InferenceError(f"{what} must hold numbers (µm): {text}.") from None


class Refocuser:
    """A loaded Deep-Z model that refocuses single frames.

    Parameters
    ----------
    model : str or Path
        A bundled model name (``"default"``) or a model file.
    backend : str
        One of `BACKENDS`, or ``"auto"``: on CUDA TensorRT when importable, else
        torch; on the CPU ONNX Runtime when installed, else torch. ``"auto"`` falls
        back from TensorRT to torch when no engine can be built (see
        ``backend_fallback``); an explicit ``"tensorrt"`` raises instead.
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``... (``"auto"``: CUDA when available).
    threads : int, optional
        CPU threads for torch (default: torch's own choice).
    batch_size : int
        Planes computed per network call (``"deepz-unet"`` models).
    precision : str
        ``"fp32"`` (default), or ``"fp16"`` / ``"bf16"`` on CUDA (torch and
        tensorrt backends; TensorRT sets it in the exported ONNX graph).
    cuda_graphs : bool
        Torch backend on CUDA: record one CUDA graph per input shape and replay it.

    Attributes
    ----------
    backend : str
        The backend that runs the network (after ``"auto"`` and any fallback).
    backend_fallback : str or None
        Why ``"auto"`` fell back from TensorRT to torch, or None.
    device : torch.device
        Where the network runs (CUDA devices with their index).

    Examples
    --------
    >>> refocuser = Refocuser("default")                            # doctest: +SKIP
    >>> volume = refocuser.refocus(frame, planes_um=range(-8, 9, 2))  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL_NAME,
        *,
        backend: str = "auto",
        device: str = "cpu",
        threads: int | None = None,
        batch_size: int = 8,
        precision: str = "fp32",
        cuda_graphs: bool = True,
    ) -> None:
        check_precision_name(precision)  # reduced precisions run on CUDA only
        if backend != "auto" and backend not in BACKENDS:
            raise InferenceError(
                f"Backend {backend!r} is not available; choose one of "
                f"{', '.join(BACKENDS)} (or 'auto')."
            )
        if batch_size < 1:
            raise InferenceError(f"batch_size must be ≥ 1, got {batch_size}.")
        import torch

        self.device = pick_device(device)
        auto = backend == "auto"
        if auto:
            backend = _auto_backend(self.device)
        if backend == "onnxruntime" and self.device.type != "cpu":
            raise InferenceError(
                "The onnxruntime backend runs on the CPU here; use backend='torch' "
                f"for {self.device}."
            )
        if backend == "tensorrt":
            from deepz_live.inference._tensorrt_support import import_tensorrt

            import_tensorrt()  # a missing TensorRT is one clear message
            if self.device.type != "cuda":
                raise InferenceError(
                    "The tensorrt backend runs on NVIDIA GPUs only; pass "
                    "device='cuda', or use backend='onnxruntime' on the CPU."
                )
        if precision != "fp32" and self.device.type != "cuda":
            raise InferenceError(
                f"Precision {precision!r} needs a CUDA GPU (torch or tensorrt backend;"
                f" here: backend {backend!r} on {self.device}); use precision='fp32'."
            )
        if threads is not None:
            torch.set_num_threads(int(threads))
        # the description only: the generator goes into torch for that backend alone
        self.info = read_model_info(model)
        if self.info.training.get("beats_identity") is False:
            warnings.warn(
                f"Model {self.info.name!r} never beat the identity on its held-out "
                "data (training.beats_identity = false): its planes may be worse "
                "than the input frame itself. Evaluate it with deepz evaluate.",
                ModelQualityWarning,
                stacklevel=2,
            )
        if self.info.training.get("cross_modality"):
            raise InferenceError(
                f"{self.info.name!r} is a cross-modality model; the Refocuser serves "
                "same-modality refocusing models only (use deepz evaluate for "
                "cross-modality models)."
            )
        if backend != "torch":
            # torch's load_model checks the weights; the others never load them
            check_finite_weights(model)
        self.precision = precision
        self.normalization = Normalization.from_dict(self.info.normalization)
        self.config = GeneratorConfig.from_dict(self.info.generator)
        self.multiple = required_multiple(self.config)
        self.batch_size = batch_size
        self._model = model
        self._threads = threads
        self._cuda_graphs = cuda_graphs
        #: why ``backend="auto"`` left TensorRT for torch (None: it did not)
        self.backend_fallback: str | None = None
        # errors that make "auto" fall back to torch: TensorRT build failures only
        self._fallback_errors: tuple[type[Exception], ...] = ()
        self._backend: NetworkRunner
        self.backend = backend
        if backend == "tensorrt":
            from deepz_live.inference._tensorrt_support import TensorRTBuildError

            if auto:
                self._fallback_errors = (TensorRTBuildError,)
            try:
                self._backend = self._make_backend(backend)
            except self._fallback_errors as exc:
                self._fall_back_to_torch(exc)
        else:
            self._backend = self._make_backend(backend)

    # -- public --------------------------------------------------------------------
    @property
    def dz_range_um(self) -> float:
        """The refocusing range the model was trained for (±µm)."""
        return float(self.info.dz_range_um)

    def refocus(self, frame: ArrayLike, planes_um: Sequence[float]) -> np.ndarray:
        """Refocus one frame to flat planes ``planes_um`` (µm from the frame's focus).

        Parameters
        ----------
        frame : array_like (Y, X)
            Camera counts, offset included: integers, or floats in the same units
            (see `Normalization.input_scale` for the float rule). Every pixel must
            be finite.
        planes_um : sequence of float
            Finite distances within the model's range (`dz_range_um`).

        Returns
        -------
        ndarray (N, Y, X), float32, in the frame's intensity units.

        Raises
        ------
        InferenceError
            A frame that is not 2-D, not numeric, has NaN or infinite pixels or (a
            float frame) is not in camera counts; planes that are empty, not finite
            or outside the model's range; a model whose output is not finite.
        """
        planes = _as_float_array(planes_um, "planes_um", np.float64)
        if planes.ndim == 0:
            planes = planes[None]
        if planes.ndim != 1 or planes.size == 0:
            raise InferenceError(
                "planes_um must be a non-empty list of distances (µm)."
            )
        if not np.all(np.isfinite(planes)):
            raise InferenceError(
                f"planes_um must be finite distances (µm), got {planes.tolist()}."
            )
        self._check_range(planes)
        image, scale = self._check_frame(frame)
        # one distance per plane: a stack model then picks planes, not pixels
        return self._run(image, scale, planes.astype(np.float32))

    def refocus_surface(self, frame: ArrayLike, dpm_um: ArrayLike) -> np.ndarray:
        """Refocus one frame onto a surface: ``dpm_um[y, x]`` µm at each pixel.

        The frame is checked as in `refocus`.

        Returns
        -------
        ndarray (Y, X), float32, in the frame's intensity units.
        """
        image, scale = self._check_frame(frame)
        dpm = _as_float_array(dpm_um, "The DPM", np.float32)
        if dpm.shape != image.shape:
            raise InferenceError(
                f"The DPM has shape {dpm.shape} but the frame {image.shape}; give one "
                "refocusing distance per pixel."
            )
        if not np.all(np.isfinite(dpm)):
            raise InferenceError("The DPM contains NaN or infinite values.")
        self._check_range(dpm)
        return self._run(image, scale, dpm[None])[0]

    def __repr__(self) -> str:
        return (
            f"Refocuser({self.info.name!r}, backend={self.backend!r}, "
            f"device={str(self.device)!r}, range=±{self.dz_range_um:g} µm)"
        )

    # -- internals -----------------------------------------------------------------
    def _check_frame(self, frame: ArrayLike) -> tuple[np.ndarray, float]:
        """The frame as float32 and its normalization scale, or a clear error."""
        try:
            image = np.asarray(frame)
        except (TypeError, ValueError) as exc:  # ragged nested lists, ...
            text = str(exc).rstrip(".")
            raise InferenceError(f"The frame is not an image array: {text}.") from None
        if image.ndim != 2:
            raise InferenceError(
                f"Expected one 2-D frame (Y, X), got an array of shape {image.shape}."
            )
        if (
            not (
                np.issubdtype(image.dtype, np.integer)
                or np.issubdtype(image.dtype, np.floating)
            )
            or image.dtype == np.bool_
        ):
            raise InferenceError(
                f"Frames must be integer or float images, got dtype {image.dtype}."
            )
        if min(image.shape) < 2:
            raise InferenceError(f"Frame of shape {image.shape} is too small.")
        with np.errstate(over="ignore"):  # float64 beyond float32: inf, counted below
            values = image.astype(np.float32, copy=False)
        if not np.issubdtype(image.dtype, np.floating):
            return values, self.normalization.scale_of(values)  # camera counts
        finite = np.isfinite(values)
        if not finite.all():
            bad = values.size - int(np.count_nonzero(finite))
            kind = (
                "NaN, infinite or beyond float32"
                if image.dtype.itemsize > 4
                else "NaN or infinite"
            )
            raise InferenceError(
                f"The frame has {bad} {kind} pixel(s) of {values.size}; one "
                "would make the whole volume NaN. Replace them (e.g. "
                "numpy.nan_to_num with the background level) or fix the "
                "processing that made them."
            )
        try:
            return values, self.normalization.input_scale(values)
        except ValueError as exc:
            raise InferenceError(str(exc)) from None

    def _check_range(self, dpm: np.ndarray) -> None:
        limit = self.dz_range_um * (1 + 1e-6)
        worst = float(np.max(np.abs(dpm)))
        if worst > limit:
            raise InferenceError(
                f"Refocusing by {worst:g} µm is outside the model's trained range "
                f"±{self.dz_range_um:g} µm; choose planes within it."
            )

    def _make_backend(self, backend: str) -> NetworkRunner:
        if backend == "torch":
            generator, _ = load_model(self._model, device=str(self.device))
            return _TorchBackend(
                generator, self.device, self.precision, self._cuda_graphs
            )
        if backend == "onnxruntime":
            return _OnnxRuntimeBackend(self._model, self._threads)
        from deepz_live.inference._tensorrt_backend import TensorRTBackend

        # engines are built (or loaded from the cache) per padded frame size
        return TensorRTBackend(
            self._model,
            device=self.device,
            precision=self.precision,
            batch=self.batch_size,
        )

    def _fall_back_to_torch(self, error: Exception) -> None:
        """``backend="auto"``: TensorRT could not make an engine; use torch (once)."""
        reason = f"TensorRT could not make an engine: {error}"
        warnings.warn(
            f"{reason}. Falling back to the torch backend on {self.device} "
            "(recorded as backend_fallback).",
            RuntimeWarning,
            stacklevel=3,
        )
        self._fallback_errors = ()  # one fallback, one warning
        self._backend = self._make_backend("torch")
        self.backend = "torch"
        self.backend_fallback = reason

    def _run(self, image: np.ndarray, scale: float, dpm_um: np.ndarray) -> np.ndarray:
        normalized = self.normalization.apply(image, scale)
        try:
            out = self._apply(normalized, dpm_um)
        except self._fallback_errors as exc:  # engines are built on first use
            self._fall_back_to_torch(exc)
            out = self._apply(normalized, dpm_um)
        volume = self.normalization.invert(out, scale)
        # one cheap reduction per volume; a NaN or inf anywhere makes the sum
        # non-finite (so can a float32 overflow: then the count below is 0)
        with np.errstate(over="ignore", invalid="ignore"):
            total = volume.sum()
        bad = 0
        if not np.isfinite(total):
            bad = volume.size - int(np.count_nonzero(np.isfinite(volume)))
        if bad:
            raise InferenceError(
                f"Model {self.info.name!r} returned {bad} NaN or infinite value(s) "
                f"(of {volume.size}) for a finite frame ({self.backend} backend, "
                f"{self.precision}): its output cannot be trusted. With fp16/bf16 "
                "try precision='fp32'; otherwise check the model with deepz evaluate."
            )
        return volume

    def _apply(self, normalized: np.ndarray, dpm_um: np.ndarray) -> np.ndarray:
        return apply_generator(
            self._backend,
            normalized,
            dpm_um,
            config=self.config,
            dpm_scale_um=self.info.dpm_scale_um,
            batch_size=self.batch_size,
        )
