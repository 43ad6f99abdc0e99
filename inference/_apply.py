"""Applying a generator to frames: normalization, DPM channel, padding, batching.

One place that turns raw frames and DPMs (µm) into network inputs and network outputs
back into intensity units, exactly as in training: used by evaluation and training's
validation, and the basis of the streaming runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch


def pad_to_multiple(image: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple]:
    """Reflect-pad the last two axes up to a multiple; returns (padded, crop slices)."""
    h, w = image.shape[-2:]
    ph = (-h) % multiple
    pw = (-w) % multiple
    top, left = ph // 2, pw // 2
    pad = [(0, 0)] * (image.ndim - 2) + [(top, ph - top), (left, pw - left)]
    mode = "reflect" if min(h, w) > max(ph, pw) else "edge"
    padded = np.pad(image, pad, mode=mode)
    return padded, (slice(top, top + h), slice(left, left + w))


def run_in_batches(
    run: Callable[[np.ndarray, np.ndarray], np.ndarray],
    normalized_input: np.ndarray,
    dpm_um: np.ndarray,
    *,
    dpm_scale_um: float,
    multiple: int,
    batch_size: int = 8,
) -> np.ndarray:
    """Pad, build the DPM channel, call ``run`` batch by batch, crop back.

    The one network-input path shared by evaluation, training's validation and the
    `Refocuser`'s backends.

    Parameters
    ----------
    run : callable
        ``run(padded_image (H, W), dpm_channel (n, H, W)) -> (n, H, W)``: one
        forward pass of the network on float32 arrays.
    normalized_input : ndarray (Y, X)
        The frame after `Normalization.apply`.
    dpm_um : ndarray (N, Y, X) or (N,)
        Refocusing distances in µm: per-pixel maps, or one constant per output.
    dpm_scale_um : float
        The DPM channel carries ``dpm_um / dpm_scale_um``.
    multiple : int
        Spatial size multiple the network needs.

    Returns
    -------
    ndarray (N, Y, X), float32, normalized units.
    """
    frame = np.asarray(normalized_input, np.float32)
    dpm = np.asarray(dpm_um, np.float32)
    if dpm.ndim == 1:
        dpm = np.broadcast_to(dpm[:, None, None], (dpm.size, *frame.shape))
    padded_frame, crop = pad_to_multiple(frame, multiple)
    padded_frame = np.ascontiguousarray(padded_frame, np.float32)
    padded_dpm, _ = pad_to_multiple(dpm / np.float32(dpm_scale_um), multiple)
    out = np.empty((dpm.shape[0], *frame.shape), np.float32)
    for start in range(0, dpm.shape[0], batch_size):
        chunk = np.ascontiguousarray(padded_dpm[start : start + batch_size])
        out[start : start + chunk.shape[0]] = run(padded_frame, chunk)[
            :, crop[0], crop[1]
        ]
    return out


def predict_normalized(
    generator: torch.nn.Module,
    normalized_input: np.ndarray,
    dpm_um: np.ndarray,
    *,
    dpm_scale_um: float,
    multiple: int,
    device: Any = "cpu",
    batch_size: int = 8,
) -> np.ndarray:
    """Run an in-memory generator (eval mode) on one normalized frame; see
    `run_in_batches` for the arguments. Returns (N, Y, X) float32, normalized.
    """
    import torch

    def run(image: np.ndarray, dpm: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            image_t = torch.from_numpy(image).to(device)
            dpm_t = torch.from_numpy(dpm).to(device)
            x = torch.stack([image_t.expand_as(dpm_t), dpm_t], dim=1)
            return generator(x)[:, 0].float().cpu().numpy()

    return run_in_batches(
        run,
        normalized_input,
        dpm_um,
        dpm_scale_um=dpm_scale_um,
        multiple=multiple,
        batch_size=batch_size,
    )
