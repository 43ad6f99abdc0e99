"""The run plan the panel's controls produce: plain, frozen, validated data.

No Qt here: the same `LiveSettings` can be built in a script or a test, saved next to
the data it produced (``settings.model_dump_json()``), and handed to the live session.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path  # noqa: TC003  (pydantic needs it at run time)
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deepz_live.inference import LIVE_MODEL_NAME

__all__ = [
    "BACKENDS",
    "INFERENCE_POLICIES",
    "MAX_PLANES",
    "LiveSettings",
    "SettingsError",
    "check_planes_in_model_range",
    "planes_from_range",
]

BACKENDS: tuple[str, ...] = ("auto", "torch", "onnxruntime")
"""Refocusing backends offered in the panel (``auto`` picks the fastest installed)."""

INFERENCE_POLICIES: dict[str, str] = {
    "latest": "live preview: refocus the newest frame, skip (and count) the others",
    "all": "refocus every frame, catching up from the raw file after the camera",
}
"""What the inference worker does when frames arrive faster than it refocuses."""

MAX_PLANES = 201
"""More planes than this is almost certainly a typo (e.g. a step of 0.01 µm)."""


class SettingsError(ValueError):
    """Settings that cannot run; the message is written for the user."""


class LiveSettings(BaseModel):
    """One live run: acquisition, refocusing and saving.

    Parameters
    ----------
    config : Path
        Micro-Manager configuration file (``.cfg``).
    exposure_ms : float
        Camera exposure per frame.
    led_intensity_pct : float
        Light source intensity, 0-100 %.
    interval_ms : float
        Time between frame starts; 0 means as fast as possible.
    frames : int or None
        Number of frames; None runs until stopped.
    planes_um : tuple of float
        Refocusing distances from the focal plane, µm, increasing.
    model : str
        Bundled model name (default `LIVE_MODEL_NAME`) or a model file.
    backend : str
        One of `BACKENDS`.
    policy : str
        One of `INFERENCE_POLICIES`.
    output : Path
        Where the raw frames are saved (always; ``.ome.tif`` or ``.ome.zarr``).
    save_volumes : bool
        Also save the refocused volumes (next to the raw file).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    config: Path
    exposure_ms: float = Field(10.0, gt=0, le=60_000)
    led_intensity_pct: float = Field(20.0, ge=0, le=100)
    interval_ms: float = Field(0.0, ge=0)
    frames: int | None = Field(100, gt=0)
    planes_um: tuple[float, ...] = (-8.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0)
    model: str = LIVE_MODEL_NAME
    backend: Literal["auto", "torch", "onnxruntime"] = "auto"
    policy: Literal["latest", "all"] = "latest"
    output: Path
    save_volumes: bool = False

    @field_validator("planes_um")
    @classmethod
    def _planes_increasing(cls, planes: tuple[float, ...]) -> tuple[float, ...]:
        if not planes:
            raise ValueError("choose at least one refocus plane")
        if len(planes) > MAX_PLANES:
            raise ValueError(f"{len(planes)} planes is more than {MAX_PLANES}")
        if not all(math.isfinite(p) for p in planes):
            raise ValueError("refocus planes must be finite numbers")
        if any(b <= a for a, b in itertools.pairwise(planes)):
            raise ValueError("refocus planes must increase")
        return planes

    @field_validator("model")
    @classmethod
    def _model_named(cls, model: str) -> str:
        if not model.strip():
            raise ValueError(
                "choose a model (a bundled name such as 'default' or a file)"
            )
        return model.strip()

    @model_validator(mode="after")
    def _paths_named(self) -> LiveSettings:
        if str(self.config).strip() in ("", "."):
            raise ValueError("choose a Micro-Manager configuration file (.cfg)")
        if str(self.output).strip() in ("", "."):
            raise ValueError("choose where to save the raw frames")
        return self

    @property
    def dz_um(self) -> float:
        """Plane spacing in µm (the mean step; 1.0 for a single plane)."""
        if len(self.planes_um) < 2:
            return 1.0
        return (self.planes_um[-1] - self.planes_um[0]) / (len(self.planes_um) - 1)


def planes_from_range(
    start_um: float, stop_um: float, step_um: float
) -> tuple[float, ...]:
    """Planes from ``start_um`` to ``stop_um`` inclusive every ``step_um``.

    Raises
    ------
    SettingsError
        If the step is not positive, the range is reversed or holds too many planes.
    """
    values = (start_um, stop_um, step_um)
    if not all(math.isfinite(v) for v in values):
        raise SettingsError("Refocus planes: range and step must be numbers.")
    if step_um <= 0:
        raise SettingsError(
            f"Refocus planes: the step must be > 0 µm, got {step_um:g}."
        )
    if stop_um < start_um:
        raise SettingsError(
            f"Refocus planes: 'from' ({start_um:g} µm) is above 'to' ({stop_um:g} µm)."
        )
    count = math.floor((stop_um - start_um) / step_um + 1e-9) + 1
    if count > MAX_PLANES:
        raise SettingsError(
            f"Refocus planes: {count} planes from {start_um:g} to {stop_um:g} µm every "
            f"{step_um:g} µm; at most {MAX_PLANES}."
        )
    # rounding keeps 0.1-µm steps printable (0.30000000000000004 -> 0.3)
    return tuple(round(start_um + i * step_um, 6) for i in range(count))


def check_planes_in_model_range(
    planes_um: tuple[float, ...], dz_range_um: float
) -> None:
    """Raise `SettingsError` if a plane lies outside the model's trained ±range."""
    outside = [p for p in planes_um if abs(p) > dz_range_um + 1e-9]
    if outside:
        raise SettingsError(
            f"Refocus planes: {', '.join(f'{p:+g}' for p in outside[:3])} µm "
            f"{'is' if len(outside) == 1 else 'are'} outside the model's trained range "
            f"of ±{dz_range_um:g} µm; the model does not extrapolate. Narrow the range."
        )
