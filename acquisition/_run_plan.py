"""`RunPlan`: one live run, as the command line, the panel and the API describe it.

A run plan is frozen and checked when it is made: ``deepz acquire --model`` builds one
from its options, the panel's controls build one (`deepz_live.gui.LiveSettings` is a
run plan with the panel's defaults), and ``deepz.live_refocus(scope, plan)`` runs one.
The plan is saved with the raw frames (run metadata ``plan``), so the file says how it
was asked for, next to what the microscope and the model then did.

The acquisition layer knows nothing of models: ``model`` is a name or a file for the
composition root (``deepz``) to load, and None means its live default.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path  # noqa: TC003  (pydantic needs it at run time)
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deepz_live.acquisition._live_policy import Policy  # noqa: TC001  (pydantic)
from deepz_live.acquisition._planes import check_planes, parse_planes

__all__ = ["RunPlan"]


class RunPlan(BaseModel):
    """One live run: what to record, how to refocus it, where to save it.

    Parameters
    ----------
    config : Path or None
        Micro-Manager configuration; None is the simulated microscope.
    out : Path
        The raw time-lapse (``*.ome.tif``, or ``*.ome.zarr`` with the zarr extra).
    frames : int or None
        Number of frames; None runs until stopped (the panel's continuous mode).
    interval_ms : float
        Time between frame starts; 0 is as fast as the camera goes.
    exposure_ms : float
        Camera exposure.
    led_intensity : float or None
        LED intensity in % of its maximum; None leaves the LED as it is.
    model : str or None
        Deep-Z model: a bundled name or a ``.safetensors`` file; None is the live
        default of the caller (``deepz``: ``default-fast``).
    planes_um : tuple of float or None
        Refocus planes, µm from the focus, increasing (text such as ``"-8:8:2"`` is
        parsed); None is every 2 µm within ±80 % of the model's range.
    policy : {"latest", "all"}
        ``latest`` refocuses the newest frame and skips (counts) the others; ``all``
        refocuses every frame, catching up from the raw file.
    save_volumes : bool or Path
        True saves the volumes beside the raw file; a path saves them there.
    backend, device : str
        Refocuser backend (``auto``, ``torch``, ``onnxruntime``, ``tensorrt``) and
        device (``cpu``, ``cuda``, ``cuda:1``..., ``auto``).
    allow_model_mismatch : bool
        Refocus even if the model was trained at another pixel size, NA or
        wavelength than this microscope's.
    overwrite : bool
        Replace existing output files.
    max_frames_in_memory : int
        ``all``: frames held in memory for the refocusing worker; later ones wait on
        disk.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    config: Path | None = None
    out: Path
    frames: int | None = Field(30, gt=0)
    interval_ms: float = Field(0.0, ge=0)
    exposure_ms: float = Field(10.0, gt=0, le=60_000)
    led_intensity: float | None = Field(None, ge=0, le=100)
    model: str | None = None
    planes_um: tuple[float, ...] | None = None
    policy: Policy = "latest"
    save_volumes: bool | Path = False
    backend: str = "auto"
    device: str = "cpu"
    allow_model_mismatch: bool = False
    overwrite: bool = False
    max_frames_in_memory: int = Field(16, ge=1)

    @field_validator("planes_um", mode="before")
    @classmethod
    def _planes(cls, planes: Any) -> tuple[float, ...] | None:
        if planes is None:
            return None
        if isinstance(planes, str):
            return parse_planes(planes)
        return check_planes(planes)

    @field_validator("model", mode="before")
    @classmethod
    def _model_text(cls, model: Any) -> Any:
        return str(model) if isinstance(model, PathLike) else model

    @field_validator("model")
    @classmethod
    def _model_named(cls, model: str | None) -> str | None:
        if model is not None and not model.strip():
            raise ValueError(
                "choose a model (a bundled name such as 'default-fast', or a file)"
            )
        return None if model is None else model.strip()

    @field_validator("out")
    @classmethod
    def _out_named(cls, out: Path) -> Path:
        if str(out).strip() in ("", "."):
            raise ValueError("choose where to save the raw frames")
        return out

    def to_metadata(self) -> dict[str, Any]:
        """The plan as plain JSON types, for a file's run metadata."""
        return self.model_dump(mode="json")
