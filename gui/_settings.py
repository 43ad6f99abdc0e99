"""The run plan the panel's controls produce: plain, frozen, validated data.

No Qt here: `LiveSettings` is acquisition's `RunPlan` with the panel's defaults, so
the same plan can be built in a script or a test, is saved with the data it produced,
and is handed to the live session as it is.
"""

from __future__ import annotations

from pathlib import Path  # noqa: TC003  (pydantic needs it at run time)
from typing import Literal

from pydantic import Field, field_validator

from deepz_live.acquisition import (
    MAX_PLANES,
    POLICY_DESCRIPTIONS,
    PlaneError,
    Policy,
    RunPlan,
    check_planes,
)
from deepz_live.acquisition import planes_from_range as acquisition_planes_from_range
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

INFERENCE_POLICIES: dict[Policy, str] = POLICY_DESCRIPTIONS
"""What the inference worker does when frames arrive faster than it refocuses (the
acquisition layer's `POLICY_DESCRIPTIONS`)."""


class SettingsError(ValueError):
    """Settings that cannot run; the message is written for the user."""


class LiveSettings(RunPlan):
    """One live run as the panel runs it: a `RunPlan` with the panel's defaults.

    The panel always names a configuration file and a model, refocuses the planes
    its from/to/step fields give (evenly spaced), offers the backends of `BACKENDS`,
    and starts with 100 frames at 20 % LED. Other fields as `RunPlan`.

    Parameters
    ----------
    config : Path
        Micro-Manager configuration file (``.cfg``).
    out : Path
        Where the raw frames are saved (always; ``.ome.tif`` or ``.ome.zarr``).
    led_intensity : float
        Light source intensity, 0-100 %.
    frames : int or None
        Number of frames; None runs until stopped.
    planes_um : tuple of float
        Refocusing distances from the focal plane, µm, increasing.
    model : str
        Bundled model name (default `LIVE_MODEL_NAME`) or a model file.
    backend : str
        One of `BACKENDS`.
    """

    config: Path
    led_intensity: float = Field(20.0, ge=0, le=100)
    frames: int | None = Field(100, gt=0)
    planes_um: tuple[float, ...] = (-8.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0)
    model: str = LIVE_MODEL_NAME
    backend: Literal["auto", "torch", "onnxruntime"] = "auto"
    save_volumes: bool = False  # the panel saves them beside the raw file

    @field_validator("config")
    @classmethod
    def _config_named(cls, config: Path) -> Path:
        if str(config).strip() in ("", "."):
            raise ValueError("choose a Micro-Manager configuration file (.cfg)")
        return config

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

    The rules are `deepz_live.acquisition.planes_from_range`'s; this raises them as
    `SettingsError` for the panel.
    """
    try:
        return acquisition_planes_from_range(start_um, stop_um, step_um)
    except PlaneError as error:
        raise SettingsError(f"Refocus planes: {error}") from None


def check_planes_in_model_range(
    planes_um: tuple[float, ...], dz_range_um: float
) -> None:
    """Raise `SettingsError` if a plane lies outside the model's trained ±range."""
    try:
        check_planes(planes_um, dz_range_um)
    except PlaneError as error:
        raise SettingsError(f"Refocus planes: {error}") from None
