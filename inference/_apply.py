"""Applying a generator to frames: normalization, DPM channel, padding, batching.

One place that turns raw frames and DPMs (µm) into network inputs and network outputs
back into intensity units, exactly as in training: used by evaluation and training's
validation, and the basis of the streaming runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
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
    """Run the generator on one normalized frame for a stack of DPMs.

    Parameters
    ----------
    generator : torch.nn.Module
        The Deep-Z generator (eval mode).
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
    import torch

    frame = np.asarray(normalized_input, np.float32)
    dpm = np.asarray(dpm_um, np.float32)
    if dpm.ndim == 1:
        dpm = np.broadcast_to(dpm[:, None, None], (dpm.size, *frame.shape))
    padded_frame, crop = pad_to_multiple(frame, multiple)
    padded_dpm, _ = pad_to_multiple(dpm, multiple)
    out = np.empty((dpm.shape[0], *frame.shape), np.float32)
    image_t = torch.from_numpy(np.ascontiguousarray(padded_frame)).to(device)
    with torch.inference_mode():
        for start in range(0, dpm.shape[0], batch_size):
            chunk = torch.from_numpy(
                np.ascontiguousarray(padded_dpm[start : start + batch_size])
            ).to(device)
            x = torch.stack(
                [image_t.expand_as(chunk), chunk / float(dpm_scale_um)], dim=1
            )
            y = generator(x)[:, 0].float().cpu().numpy()
            out[start : start + chunk.shape[0]] = y[:, crop[0], crop[1]]
    return out
