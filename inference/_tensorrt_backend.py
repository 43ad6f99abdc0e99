"""`TensorRTBackend`: Deep-Z generators run as TensorRT engines on one NVIDIA GPU.

Engines are fixed-shape, one per ``(batch, H, W)``, built or loaded from the cache
(`inference._tensorrt_cache`) the first time a shape is seen; each gets its own
execution context and device buffers, allocated once (``_Slot``). Inputs are
batched: fewer than the engine's batch are padded up to it, more are split. Work
runs with ``IExecutionContext.execute_async_v3`` on the backend's own CUDA stream.

Threads. A `TensorRTBackend` owns its CUDA stream, device buffers and execution
contexts; call it from one thread (the inference worker).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from deepz_live.inference._errors import InferenceError
from deepz_live.inference._export import check_precision_name
from deepz_live.inference._modelfile import read_model_info, resolve_model_path
from deepz_live.inference._networks import required_multiple
from deepz_live.inference._tensorrt_build import DEFAULT_WORKSPACE_BYTES
from deepz_live.inference._tensorrt_cache import EngineStore
from deepz_live.inference._tensorrt_export import (
    engine_input_shape,
    onnx_for_tensorrt,
)
from deepz_live.inference._tensorrt_support import (
    GpuIdentity,
    check_precision,
    import_tensorrt,
    tensorrt_logger,
)

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["TensorRTBackend"]


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
    cache folder, see `inference._tensorrt_cache`) when a shape is first used, with
    its own execution context and device buffers allocated once. All work goes to
    the backend's own CUDA stream; each call returns when its results are on the
    host.

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
        self._onnx = onnx_for_tensorrt(model, precision)
        self._store = EngineStore(
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
                    + ("; ".join(tensorrt_logger().errors) or "no details given")
                )
            slot.y_host.copy_(slot.y, non_blocking=True)
        self._stream.synchronize()
