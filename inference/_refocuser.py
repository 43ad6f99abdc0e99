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
`inference._tensorrt`; written against TensorRT's documented API, not yet run on a
GPU by this project).
``backend="auto"`` picks ONNX Runtime on the CPU when it is installed (measured faster
than torch there: 1.00 vs 0.73 volumes/s at 256² × 21 planes on this project's 2-core
machine) and torch on CUDA. On CUDA the torch backend runs in fp32, fp16 or bf16
(``precision=``) and replays one CUDA graph per input shape.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from deepz_live.inference._apply import NetworkRunner, apply_generator
from deepz_live.inference._errors import InferenceError, ModelQualityWarning
from deepz_live.inference._export import check_precision_name
from deepz_live.inference._modelfile import DEFAULT_MODEL_NAME, load_model
from deepz_live.inference._networks import GeneratorConfig, required_multiple
from deepz_live.inference._normalize import Normalization

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from numpy.typing import ArrayLike

BACKENDS = ("torch", "onnxruntime", "tensorrt")


def _auto_backend(device: str) -> str:
    """ONNX Runtime for CPU inference when installed, else torch."""
    import importlib.util

    on_cpu = device == "cpu" or (device == "auto" and not _cuda_available())
    if on_cpu and importlib.util.find_spec("onnxruntime") is not None:
        return "onnxruntime"
    return "torch"


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


class _TorchBackend:
    """Runs the generator with torch, reusing one input tensor per batch shape.

    On the CPU: float32, channels-last. On CUDA: the chosen precision (weights and
    activations in fp16/bf16; inputs are normalized, far inside FP16's range),
    channels-last, and one CUDA graph per input shape: the first call of a shape
    records the network's kernels, later calls replay them without Python or
    launch overhead (``cuda_graphs=False`` runs eagerly instead).
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
        """The generator on the buffer ``x``; replays a CUDA graph when enabled."""
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

        # warm up on a side stream (cuDNN picks its algorithms), then capture
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self.generator(x)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = self.generator(x)
        return graph, output

    def run(self, image: np.ndarray, dpm: np.ndarray) -> np.ndarray:
        """(H, W) normalized image and (n, H, W) DPM channel -> (n, H, W) output."""
        import torch

        n = dpm.shape[0]
        with torch.inference_mode():
            x = self._buffer(n, 2, *image.shape)
            x[:, 0].copy_(torch.from_numpy(image).expand(n, *image.shape))
            x[:, 1].copy_(torch.from_numpy(np.ascontiguousarray(dpm)))
            return self._forward(x)[:, 0].float().cpu().numpy()

    def run_stack(self, image: np.ndarray) -> np.ndarray:
        """(H, W) normalized image -> (K, H, W): the planes of a stack model."""
        import torch

        with torch.inference_mode():
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


class Refocuser:
    """A loaded Deep-Z model that refocuses single frames.

    Parameters
    ----------
    model : str or Path
        A bundled model name (``"default"``) or a model file.
    backend : str
        ``"auto"`` or one of `BACKENDS`.
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
        if backend == "auto":
            backend = _auto_backend(device)
        if backend not in BACKENDS:
            raise InferenceError(
                f"Backend {backend!r} is not available; choose one of "
                f"{', '.join(BACKENDS)} (or 'auto')."
            )
        if batch_size < 1:
            raise InferenceError(f"batch_size must be ≥ 1, got {batch_size}.")
        import torch

        from deepz_live.inference._train import pick_device

        self.device = pick_device(device)
        if backend == "onnxruntime" and self.device.type != "cpu":
            raise InferenceError(
                "The onnxruntime backend runs on the CPU here; use backend='torch' "
                f"for {self.device}."
            )
        if backend == "tensorrt":
            from deepz_live.inference._tensorrt import import_tensorrt

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
        generator, self.info = load_model(model, device=str(self.device))
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
        self._backend: NetworkRunner
        if backend == "torch":
            self._backend = _TorchBackend(
                generator, self.device, precision, cuda_graphs
            )
        elif backend == "onnxruntime":
            self._backend = _OnnxRuntimeBackend(model, threads)
        else:
            from deepz_live.inference._tensorrt import TensorRTBackend

            # engines are built (or loaded from the cache) per padded frame size
            self._backend = TensorRTBackend(
                model, device=self.device, precision=precision, batch=batch_size
            )
        self.backend = backend
        self.precision = precision
        self.normalization = Normalization.from_dict(self.info.normalization)
        self.config = GeneratorConfig.from_dict(self.info.generator)
        self.multiple = required_multiple(self.config)
        self.batch_size = batch_size

    # -- public --------------------------------------------------------------------
    @property
    def dz_range_um(self) -> float:
        """The refocusing range the model was trained for (±µm)."""
        return float(self.info.dz_range_um)

    def refocus(self, frame: ArrayLike, planes_um: Sequence[float]) -> np.ndarray:
        """Refocus one frame to flat planes ``planes_um`` (µm from the frame's focus).

        Returns
        -------
        ndarray (N, Y, X), float32, in the frame's intensity units.
        """
        planes = np.atleast_1d(np.asarray(planes_um, dtype=np.float64))
        if planes.ndim != 1 or planes.size == 0:
            raise InferenceError(
                "planes_um must be a non-empty list of distances (µm)."
            )
        self._check_range(planes)
        image = self._check_frame(frame)
        # one distance per plane: a stack model then picks planes, not pixels
        return self._run(image, planes.astype(np.float32))

    def refocus_surface(self, frame: ArrayLike, dpm_um: ArrayLike) -> np.ndarray:
        """Refocus one frame onto a surface: ``dpm_um[y, x]`` µm at each pixel.

        Returns
        -------
        ndarray (Y, X), float32, in the frame's intensity units.
        """
        image = self._check_frame(frame)
        dpm = np.asarray(dpm_um, dtype=np.float32)
        if dpm.shape != image.shape:
            raise InferenceError(
                f"The DPM has shape {dpm.shape} but the frame {image.shape}; give one "
                "refocusing distance per pixel."
            )
        if not np.all(np.isfinite(dpm)):
            raise InferenceError("The DPM contains NaN or infinite values.")
        self._check_range(dpm)
        return self._run(image, dpm[None])[0]

    def __repr__(self) -> str:
        return (
            f"Refocuser({self.info.name!r}, backend={self.backend!r}, "
            f"device={str(self.device)!r}, range=±{self.dz_range_um:g} µm)"
        )

    # -- internals -----------------------------------------------------------------
    def _check_frame(self, frame: ArrayLike) -> np.ndarray:
        image = np.asarray(frame)
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
        return image.astype(np.float32, copy=False)

    def _check_range(self, dpm: np.ndarray) -> None:
        limit = self.dz_range_um * (1 + 1e-6)
        worst = float(np.max(np.abs(dpm)))
        if worst > limit:
            raise InferenceError(
                f"Refocusing by {worst:g} µm is outside the model's trained range "
                f"±{self.dz_range_um:g} µm; choose planes within it."
            )

    def _run(self, image: np.ndarray, dpm_um: np.ndarray) -> np.ndarray:
        scale = self.normalization.scale_of(image)
        out = apply_generator(
            self._backend,
            self.normalization.apply(image, scale),
            dpm_um,
            config=self.config,
            dpm_scale_um=self.info.dpm_scale_um,
            batch_size=self.batch_size,
        )
        return self.normalization.invert(out, scale)
