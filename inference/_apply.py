"""Applying a generator to frames: normalization, DPM channel, padding, batching.

One place that turns raw frames and DPMs (µm) into network inputs and network outputs
back into intensity units, exactly as in training: used by evaluation and training's
validation, and the basis of the streaming runtime.

Both architectures go through `apply_generator`: a ``"deepz-unet"`` generator runs
once per batch of DPMs (`run_in_batches`); a ``"deepz-stack"`` generator runs once
per frame and the requested planes or surfaces are interpolated from its fixed
planes (`interpolate_planes`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import numpy as np

from deepz_live.inference._networks import required_multiple

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import torch

    from deepz_live.inference._networks import GeneratorConfig


class NetworkRunner(Protocol):
    """One forward pass of a generator on float32 numpy arrays (a backend)."""

    def run(self, image: np.ndarray, dpm: np.ndarray) -> np.ndarray:
        """``"deepz-unet"``: (H, W) image and (n, H, W) DPM channel -> (n, H, W)."""
        ...

    def run_stack(self, image: np.ndarray) -> np.ndarray:
        """``"deepz-stack"``: (H, W) image -> (K, H, W), one plane per channel."""
        ...


def pad_to_multiple(image: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple]:
    """Reflect-pad the last two axes up to a multiple; returns (padded, crop slices)."""
    h, w = image.shape[-2:]
    ph = (-h) % multiple
    pw = (-w) % multiple
    top, left = ph // 2, pw // 2
    pad = [(0, 0)] * (image.ndim - 2) + [(top, ph - top), (left, pw - left)]
    mode: Literal["reflect", "edge"] = "reflect" if min(h, w) > max(ph, pw) else "edge"
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


def interpolate_planes(
    stack: np.ndarray, planes_um: Sequence[float], dpm_um: np.ndarray
) -> np.ndarray:
    """Planes or surfaces from a fixed stack, linearly interpolated along z.

    Parameters
    ----------
    stack : ndarray (K, Y, X)
        One image per distance in ``planes_um``.
    planes_um : sequence of float
        Increasing, evenly spaced distances of the stack's planes (µm).
    dpm_um : ndarray (N,) or (N, Y, X)
        Requested distances: one per output plane, or one per pixel. Values
        outside the stack are clamped to its first or last plane (callers check
        the range first). A distance on a stack plane returns that plane exactly.

    Returns
    -------
    ndarray (N, Y, X), float32.
    """
    stack = np.asarray(stack, np.float32)
    grid = np.asarray(planes_um, np.float64)
    dpm = np.asarray(dpm_um, np.float64)
    position = np.clip((dpm - grid[0]) / (grid[1] - grid[0]), 0, len(grid) - 1)
    lower = np.minimum(np.floor(position).astype(np.intp), len(grid) - 2)
    weight = (position - lower).astype(np.float32)
    if dpm.ndim == 1:
        below, above = stack[lower], stack[lower + 1]
        weight = weight[:, None, None]
    else:
        below = np.take_along_axis(stack, lower, axis=0)
        above = np.take_along_axis(stack, lower + 1, axis=0)
    # below + w·(above − below): exactly `below` where w = 0
    return below + weight * (above - below)


def apply_generator(
    runner: NetworkRunner,
    normalized_input: np.ndarray,
    dpm_um: np.ndarray,
    *,
    config: GeneratorConfig,
    dpm_scale_um: float,
    batch_size: int = 8,
) -> np.ndarray:
    """Refocus one normalized frame with either architecture.

    ``"deepz-unet"``: `run_in_batches` over the DPMs. ``"deepz-stack"``: one pass
    over the padded frame, cropped back, then `interpolate_planes`.
    Returns (N, Y, X) float32 in normalized units.
    """
    multiple = required_multiple(config)
    if not config.is_stack:
        return run_in_batches(
            runner.run,
            normalized_input,
            dpm_um,
            dpm_scale_um=dpm_scale_um,
            multiple=multiple,
            batch_size=batch_size,
        )
    frame = np.asarray(normalized_input, np.float32)
    padded, crop = pad_to_multiple(frame, multiple)
    stack = runner.run_stack(np.ascontiguousarray(padded, np.float32))
    return interpolate_planes(stack[:, crop[0], crop[1]], config.planes_um, dpm_um)


class _InMemoryRunner:
    """`NetworkRunner` for a torch generator held by the caller (eval mode)."""

    def __init__(self, generator: torch.nn.Module, device: Any) -> None:
        self.generator = generator
        self.device = device

    def run(self, image: np.ndarray, dpm: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            image_t = torch.from_numpy(image).to(self.device)
            dpm_t = torch.from_numpy(dpm).to(self.device)
            x = torch.stack([image_t.expand_as(dpm_t), dpm_t], dim=1)
            return self.generator(x)[:, 0].float().cpu().numpy()

    def run_stack(self, image: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(image).to(self.device)[None, None]
            return self.generator(x)[0].float().cpu().numpy()


def predict_normalized(
    generator: torch.nn.Module,
    normalized_input: np.ndarray,
    dpm_um: np.ndarray,
    *,
    dpm_scale_um: float,
    device: Any = "cpu",
    batch_size: int = 8,
) -> np.ndarray:
    """Run an in-memory generator (eval mode) on one normalized frame; see
    `apply_generator`. Returns (N, Y, X) float32, normalized.
    """
    return apply_generator(
        _InMemoryRunner(generator, device),
        normalized_input,
        dpm_um,
        config=cast("GeneratorConfig", generator.config),
        dpm_scale_um=dpm_scale_um,
        batch_size=batch_size,
    )
