"""Intensity normalization of camera frames for Deep-Z networks.

A frame is normalized as ``(frame - offset) / scale`` where ``offset`` is the camera
dark level (fixed for a model) and ``scale`` is a robust high percentile of the
offset-subtracted *input* frame. Training normalizes both the input plane and its
target with the input's scale, so the network learns intensities relative to the
frame it sees (exposure, LED power and bleaching drop out) and its output can be
put back into counts with the same scale: `Normalization.invert`. The runtime does
exactly the same to each live frame, which is why the recipe lives in one small
serializable object stored with the model.
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
