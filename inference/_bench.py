"""Throughput and latency of the Refocuser: what ``deepz bench`` measures.

One volume = one frame refocused to ``planes`` flat planes spread over the model's
range. Each backend is warmed up, then timed volume by volume (wall clock, one volume
at a time, as in live use), on a synthetic camera-like frame.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from deepz_live.inference._errors import InferenceError
from deepz_live.inference._export import check_precision_name
from deepz_live.inference._modelfile import read_model_info
from deepz_live.inference._networks import (
    GeneratorConfig,
    estimate_gflops,
    required_multiple,
)
from deepz_live.inference._refocuser import BACKENDS, Refocuser
from deepz_live.inference._runtime import pick_device

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path


#: The smallest frame (px, square) that is timed.
MIN_BENCH_SIZE = 8


@dataclass(frozen=True)
class BenchResult:
    """Figures of one model on one backend (keys of ``deepz bench --json``)."""

    model: str
    backend: str
    device: str
    precision: str
    size: int
    planes: int
    volumes: int
    volumes_per_s: float
    plane_inferences_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    gflop_per_volume: float
    achieved_gflop_per_s: float

    def to_dict(self) -> dict[str, object]:
        return {
            k: (float(f"{v:.4g}") if isinstance(v, float) else v)
            for k, v in asdict(self).items()
        }


def camera_like_frame(size: int, seed: int = 0) -> np.ndarray:
    """A uint16 frame with camera statistics (offset 100, gamma-distributed signal)."""
    rng = np.random.default_rng(seed)
    return (100 + rng.gamma(2.0, 300.0, (size, size))).astype(np.uint16)


def bench_refocuser(
    model: str | Path = "default",
    *,
    backend: str = "auto",
    device: str = "cpu",
    size: int = 256,
    planes: int = 21,
    volumes: int = 20,
    warmup: int = 2,
    threads: int | None = None,
    precision: str = "fp32",
    progress: Callable[[int, int], None] | None = None,
) -> BenchResult:
    """Time ``volumes`` refocused volumes of ``planes`` planes at ``size``² pixels."""
    if size < MIN_BENCH_SIZE or planes < 1 or volumes < 1:
        raise ValueError(
            f"size ≥ {MIN_BENCH_SIZE}, planes ≥ 1 and volumes ≥ 1 are required."
        )
    refocuser = Refocuser(
        model, backend=backend, device=device, threads=threads,
        batch_size=planes, precision=precision,
    )  # fmt: skip
    distances = np.linspace(
        -refocuser.dz_range_um, refocuser.dz_range_um, planes
    ).tolist()
    frame = camera_like_frame(size)
    for _ in range(warmup):
        refocuser.refocus(frame, distances)
    latencies = []
    for k in range(volumes):
        t0 = time.perf_counter()
        refocuser.refocus(frame, distances)
        latencies.append(time.perf_counter() - t0)
        if progress is not None:
            progress(k + 1, volumes)
    lat = np.array(latencies)
    config = GeneratorConfig.from_dict(refocuser.info.generator)
    padded = -(-size // required_multiple(config)) * required_multiple(config)
    # a stack model computes all its planes in one pass, whatever is asked for
    passes = 1 if config.is_stack else planes
    gflop = estimate_gflops(config, padded, padded) * passes
    rate = volumes / lat.sum()
    return BenchResult(
        model=refocuser.info.name,
        backend=refocuser.backend,
        device=_device_name(refocuser.device),
        precision=precision,
        size=size,
        planes=planes,
        volumes=volumes,
        volumes_per_s=float(rate),
        plane_inferences_per_s=float(rate * planes),
        latency_p50_ms=float(np.percentile(lat, 50) * 1000),
        latency_p99_ms=float(np.percentile(lat, 99) * 1000),
        gflop_per_volume=float(gflop),
        achieved_gflop_per_s=float(gflop * rate),
    )


def _device_name(device: Any) -> str:
    """``cpu``, or the GPU's name (``cuda:0 NVIDIA H100 80GB HBM3``)."""
    if getattr(device, "type", "cpu") != "cuda":
        return str(device)
    import torch

    return f"{device} {torch.cuda.get_device_name(device)}"


def bench_all(
    models: Sequence[str | Path], backends: Sequence[str], **kwargs: object
) -> list[BenchResult]:
    """`bench_refocuser` for every model × backend.

    The models, backends, device and precision are checked before anything is
    timed, so that a typo in the last of them does not end a long run.

    Raises
    ------
    InferenceError
        A model that cannot be found or read, an unknown backend, device or
        precision.
    """
    for model in models:
        read_model_info(model)  # found, readable, a deepz-live model
    for backend in backends:
        if backend != "auto" and backend not in BACKENDS:
            raise InferenceError(
                f"Backend {backend!r} is not available; choose one of "
                f"{', '.join(BACKENDS)} (or 'auto')."
            )
    if "device" in kwargs:
        pick_device(str(kwargs["device"]))
    if "precision" in kwargs:
        check_precision_name(str(kwargs["precision"]))
    return [
        bench_refocuser(m, backend=b, **kwargs)  # type: ignore[arg-type]
        for m in models
        for b in backends
    ]
