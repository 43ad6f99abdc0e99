"""Intensity normalization of camera frames for Deep-Z networks.

A frame is normalized as ``(frame - offset) / scale`` where ``offset`` is the camera
dark level (fixed for a model) and ``scale`` is a robust high percentile of the
offset-subtracted *input* frame. Training normalizes both the input plane and its
target with the input's scale, so the network learns intensities relative to the
frame it sees (exposure, LED power and bleaching drop out) and its output can be
put back into counts with the same scale: `Normalization.invert`. The runtime does
exactly the same to each live frame, which is why the recipe lives in one small
serializable object stored with the model.

Frames are camera counts (ADU, offset included): the offset is stored in counts, so
counts are the one unit in which a model knows where "no light" is. Integer frames
are counts by construction. A float frame is taken as counts too, so that a float copy
of camera data (averaged frames, another tool's float32 TIFF) refocuses exactly like
the integers it came from; the per-frame scale makes any gain irrelevant, only the
offset matters (and ``min_scale``, also in counts). A float frame that cannot be
counts is refused, not guessed at (`Normalization.input_scale`): when its brightest
pixels do not rise above the offset by ``min_scale`` (data scaled to 0..1: with a
100-count offset nothing but negative values would remain, and with any offset the
1-count floor would replace the frame's own scale), or, for a model with a positive
offset, when more than 0.5 % of its pixels lie below half the offset
(offset-subtracted data: real counts dip below the offset only by the read noise, a
few counts).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from numpy.typing import ArrayLike

    from deepz_live.inference._zstack import ZStack

__all__ = ["Normalization"]

# Low percentile that stands in for the dark level when the camera offset is unknown:
# low enough to sit in the background, high enough to ignore dead/cold pixels.
_DARK_PERCENTILE = 0.5


@dataclass(frozen=True)
class Normalization:
    """How raw frames are scaled before a network sees them, and back.

    Parameters
    ----------
    offset : float
        Subtracted first: the camera offset (dark level) in counts.
    percentile : float
        Per-frame high percentile of ``frame - offset`` that becomes 1.0. Robust to
        a few hot pixels, unlike the maximum.
    min_scale : float
        Floor of the scale, in counts. A frame with (almost) no signal above the
        offset would otherwise have its noise blown up to unit brightness, or be
        divided by zero or a negative number.

    Raises
    ------
    ValueError
        A non-finite offset, a percentile outside (0, 100], or a non-positive
        ``min_scale``.
    """

    offset: float
    percentile: float = 99.5
    min_scale: float = 1.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.offset):
            raise ValueError(f"offset must be finite, got {self.offset}")
        if not 0 < self.percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile}")
        if not (math.isfinite(self.min_scale) and self.min_scale > 0):
            raise ValueError(f"min_scale must be positive, got {self.min_scale}")
        object.__setattr__(self, "offset", float(self.offset))
        object.__setattr__(self, "percentile", float(self.percentile))
        object.__setattr__(self, "min_scale", float(self.min_scale))

    def scale_of(self, frame: ArrayLike) -> float:
        """Scale of one frame: its high percentile above the offset, floored.

        Parameters
        ----------
        frame : array_like
            Raw frame (counts), any shape.

        Returns
        -------
        float
            ``max(percentile(frame - offset), min_scale)``.
        """
        values = np.asarray(frame, dtype=np.float32)
        # percentile(frame) - offset == percentile(frame - offset), without a copy
        high = float(np.percentile(values, self.percentile)) - self.offset
        return max(high, self.min_scale) if math.isfinite(high) else math.nan

    def input_scale(self, frame: np.ndarray) -> float:
        """Scale of a frame given to a model, after checking it is in camera counts.

        Integer frames are counts: this is `scale_of`. A float frame is counts too
        (see the module docstring) unless it cannot be: it is refused when its
        ``percentile`` is less than ``offset + min_scale`` (no light above the
        camera's dark level, e.g. data scaled to 0..1), or, when ``offset > 0``, when
        its 0.5th percentile is below ``offset / 2`` (the offset was subtracted).

        Parameters
        ----------
        frame : numpy.ndarray
            A finite 2-D frame.

        Returns
        -------
        float
            ``scale_of(frame)``.

        Raises
        ------
        ValueError
            A float frame that is not in camera counts; the message says how to
            convert it.
        """
        if not np.issubdtype(frame.dtype, np.floating):
            return self.scale_of(frame)
        values = np.asarray(frame, dtype=np.float32)
        # the very expression of `scale_of`: float counts give the integers' scale
        high = float(np.percentile(values, self.percentile))
        offset = self.offset
        problem = None
        if high - offset < self.min_scale:
            problem = (
                f"its {self.percentile:g}th percentile ({high:.4g}) is less than "
                f"{self.min_scale:g} count(s) above the camera offset the model "
                f"subtracts first ({offset:g} counts)"
            )
        elif offset > 0:
            low = float(np.percentile(values, _DARK_PERCENTILE))
            if low < offset / 2:
                problem = (
                    f"{_DARK_PERCENTILE:g} % of its pixels lie below {low:.4g}, under "
                    f"half the camera offset ({offset:g} counts), as if it had been "
                    "subtracted"
                )
        if problem is None:
            return max(high - offset, self.min_scale)
        raise ValueError(
            f"This float frame (values {float(values.min()):.4g} to "
            f"{float(values.max()):.4g}) is not in camera counts: {problem}. Give "
            "frames in camera counts with the offset included (the camera's "
            "integers, or floats in the same units): undo any scaling (×65535 "
            "undoes img_as_float of 16-bit data) and add back a subtracted offset."
        )

    def apply(self, frame: ArrayLike, scale: float | None = None) -> np.ndarray:
        """Normalize a frame (or a target, with its input's scale).

        Parameters
        ----------
        frame : array_like
            Raw intensities (counts).
        scale : float, optional
            Scale to divide by; defaults to ``scale_of(frame)``. Pass the input
            frame's scale to normalize its target the same way.

        Returns
        -------
        numpy.ndarray
            float32 ``(frame - offset) / scale``.
        """
        values = np.asarray(frame, dtype=np.float32)
        if scale is None:
            scale = self.scale_of(values)
        # float64 arithmetic keeps apply → invert exact to float32 rounding
        out = (values.astype(np.float64) - self.offset) / float(scale)
        return out.astype(np.float32)

    def invert(self, normalized: ArrayLike, scale: float) -> np.ndarray:
        """Bring a normalized image (e.g. a network output) back to counts.

        Parameters
        ----------
        normalized : array_like
            Normalized intensities.
        scale : float
            The scale used to normalize the input frame.

        Returns
        -------
        numpy.ndarray
            float32 ``normalized * scale + offset``.
        """
        values = np.asarray(normalized, dtype=np.float64)
        return (values * float(scale) + self.offset).astype(np.float32)

    def to_dict(self) -> dict[str, float]:
        """Plain JSON-serialisable form, for model files."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Normalization:
        """Rebuild from `to_dict` output.

        Parameters
        ----------
        d : mapping
            ``{"offset": ..., "percentile": ..., "min_scale": ...}``; ``percentile``
            and ``min_scale`` may be absent (defaults).

        Raises
        ------
        ValueError
            Missing ``offset``, unknown keys, or values that are not numbers.
        """
        known = {"offset", "percentile", "min_scale"}
        if not hasattr(d, "keys"):
            raise ValueError(f"normalization must be a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown normalization keys {unknown}; expected {sorted(known)}"
            )
        if "offset" not in d:
            raise ValueError(f"normalization lacks 'offset': {dict(d)}")
        values = {}
        for key, value in d.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"normalization {key!r} must be a number: {value!r}")
            values[key] = float(value)
        return cls(**values)

    @classmethod
    def fit(
        cls, stacks: Sequence[ZStack], *, percentile: float = 99.5
    ) -> Normalization:
        """Choose the offset for a set of training stacks.

        Parameters
        ----------
        stacks : sequence of ZStack
            Training data from one camera.
        percentile : float
            High percentile used per frame (see the class).

        Returns
        -------
        Normalization
            With ``offset`` = the stacks' ``camera_offset`` when every stack knows
            it, else the median over stacks of a low (0.5th) percentile of the data.

        Raises
        ------
        ValueError
            No stacks, or stacks that record different camera offsets (data from
            different cameras or settings, which one model cannot normalize alike).
        """
        if not stacks:
            raise ValueError("Normalization.fit needs at least one stack")
        offsets = [s.camera_offset for s in stacks]
        if all(o is not None for o in offsets):
            distinct = sorted({float(o) for o in offsets if o is not None})
            if len(distinct) > 1:
                raise ValueError(
                    f"the stacks record different camera offsets {distinct}; train "
                    "one model per camera setting, or re-record with one offset"
                )
            return cls(offset=distinct[0], percentile=percentile)
        dark = [float(np.percentile(s.data, _DARK_PERCENTILE)) for s in stacks]
        return cls(offset=float(np.median(dark)), percentile=percentile)
