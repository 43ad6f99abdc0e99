"""What running a network needs, whatever the backend: the device, torch's CUDA
settings, the user's cache folder, atomic writes and version numbers.

Shared by training (`inference._train`), the streaming `Refocuser` and the ONNX and
TensorRT exports, so that each rule lives in one place. torch is imported inside the
functions that need it.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepz_live.inference._errors import InferenceError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "atomic_write",
    "cuda_inference_flags",
    "pick_device",
    "user_cache_dir",
    "version_tuple",
]


def pick_device(name: str) -> Any:
    """The torch device for ``name`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"``).

    ``"auto"`` is CUDA when available, else the CPU; any other name, a missing CUDA
    or a GPU index beyond the GPUs there are is a clear `InferenceError`. A CUDA
    device always comes back with its index (``"cuda"`` is the current device,
    ``cuda:0`` unless changed), so that work placed on it later, from any thread,
    goes to the same GPU.
    """
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    unknown = (
        f"Unknown device {name!r}; use auto, cpu, cuda or cuda:N (N: the GPU's "
        "index, from 0)."
    )
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise InferenceError(unknown) from None
    if device.type not in ("cpu", "cuda"):
        raise InferenceError(unknown)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InferenceError(
                f"Device {name!r} was requested but this torch has no CUDA GPU "
                f"(torch {torch.__version__}); use --device cpu or install a CUDA "
                "build."
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InferenceError(
                f"Device {name!r} was requested, but the CUDA GPUs here are "
                f"numbered 0 to {count - 1}; use --device cuda:{count - 1} or lower."
            )
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


@contextlib.contextmanager
def cuda_inference_flags() -> Iterator[None]:
    """torch's settings for fixed-shape CUDA inference, for the ``with`` block only.

    Inside: IEEE float32 — no TF32 in cuDNN convolutions
    (``torch.backends.cudnn.allow_tf32 = False``) nor in matrix products
    (``torch.set_float32_matmul_precision("highest")``) — so precision ``"fp32"``
    means what it means for TensorRT (whose builds clear ``BuilderFlag.TF32``);
    and ``torch.backends.cudnn.benchmark = True``: input shapes are fixed, so cuDNN
    times its algorithms once per shape and keeps the fastest. fp16/bf16
    arithmetic is unaffected (TF32 concerns float32 only).

    Recent torch versions have per-operator ``fp32_precision`` settings inheriting
    from their parents (``torch.backends.cudnn.fp32_precision = "tf32"`` would make the
    legacy ``allow_tf32 = False`` ineffective): there the convolution and RNN
    settings are also set to ``"ieee"``, consistently with the legacy flags (torch
    refuses to run cuBLAS with the two inconsistent), and every one of them is put
    back exactly.

    These settings are process-wide in torch: they are restored to the caller's
    values on exit (also after an error), and apply to other threads' CUDA work
    while the block runs.
    """
    import torch

    cudnn = torch.backends.cudnn
    leaves = _fp32_precision_settings(torch)
    saved_leaves = [leaf.fp32_precision for leaf in leaves]
    saved_conv = _legacy(lambda: cudnn.allow_tf32)
    saved_matmul = _legacy(torch.get_float32_matmul_precision)
    saved_benchmark = cudnn.benchmark
    try:
        cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        for leaf in leaves[:2]:  # conv, rnn: an explicit "ieee", whatever parents say
            leaf.fp32_precision = "ieee"
        cudnn.benchmark = True
        yield
    finally:
        cudnn.benchmark = saved_benchmark
        if saved_conv is not None:
            cudnn.allow_tf32 = saved_conv
        if saved_matmul is not None:
            torch.set_float32_matmul_precision(saved_matmul)
        for leaf, value in zip(leaves, saved_leaves, strict=True):
            leaf.fp32_precision = value


def _fp32_precision_settings(torch: Any) -> list[Any]:
    """Recent torch's per-operator settings, which the legacy TF32 setters write."""
    backends = torch.backends
    if not hasattr(backends.cudnn, "conv"):
        return []  # older torch: the legacy flags are the only ones
    leaves = [backends.cudnn.conv, backends.cudnn.rnn, backends.cuda.matmul]
    mkldnn_matmul = getattr(getattr(backends, "mkldnn", None), "matmul", None)
    if mkldnn_matmul is not None:  # set_float32_matmul_precision writes it too
        leaves.append(mkldnn_matmul)
    return leaves


def _legacy(read: Any) -> Any:
    """A legacy TF32 getter's value; None where recent torch finds the legacy and
    per-operator settings already inconsistent (its getters then raise)."""
    try:
        return read()
    except RuntimeError:
        return None


def user_cache_dir(*parts: str) -> Path:
    """``$XDG_CACHE_HOME/deepz-live/<parts>`` (default ``~/.cache/deepz-live/...``).

    An empty or relative ``XDG_CACHE_HOME`` is ignored, as the XDG Base Directory
    specification asks (a relative one would put the cache wherever the program
    happens to run).
    """
    value = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(value) if value and os.path.isabs(value) else Path.home() / ".cache"
    return root.joinpath("deepz-live", *parts)


def atomic_write(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file renamed into place.

    The temporary file is named after this process, so two processes filling the
    same cache never write into each other's file; readers see the old file or
    the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def version_tuple(version: str) -> tuple[int, ...]:
    """The leading numbers of a version string: ``"10.13.0.35"`` -> (10, 13, 0, 35),
    ``"2.13.0+cpu"`` -> (2, 13, 0), ``"2.6.0a0"`` -> (2, 6, 0)."""
    numbers = []
    for part in str(version).split("."):
        match = re.match(r"\d+", part)
        if match is None:
            break
        numbers.append(int(match.group()))
        if match.end() != len(part):
            break
    return tuple(numbers)
