"""`live_refocus`: run a `RunPlan` on a microscope, refocusing every frame as it comes.

The plan comes from the command line, the panel or a script; this module loads its
model as a `RefocuserProcessor` (or takes any `FrameProcessor`), checks that the model
fits the microscope before any file or thread exists, and hands both to acquisition's
`LiveSession`, which saves the plan with the raw frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepz_live.acquisition import (
    FrameProcessor,
    LiveSession,
    RunPlan,
    default_volume_path,
    microscope_optics,
)
from deepz_live.inference import LIVE_MODEL_NAME
from deepz_live.live._processor import RefocuserProcessor

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from deepz_live.acquisition import Microscope

__all__ = ["live_refocus", "plan_from"]


def plan_from(plan: RunPlan | None = None, **fields: Any) -> RunPlan:
    """A `RunPlan` from ``plan`` with ``fields`` replaced (checked again), or new.

    Raises
    ------
    pydantic.ValidationError
        A field the plan does not have, or a value it refuses (the message says
        which and why).
    """
    if plan is None:
        return RunPlan(**fields)
    if not fields:
        return plan
    return RunPlan.model_validate({**plan.model_dump(), **fields})


def live_refocus(
    scope: Microscope,
    plan: RunPlan | None = None,
    *,
    processor: FrameProcessor | None = None,
    on_volume: Callable[[int, np.ndarray], object] | None = None,
    start: bool = True,
    **fields: Any,
) -> LiveSession:
    """Run a time-lapse and refocus its frames into volumes while they are taken.

    Returns a started `LiveSession` at once: iterate over it, pass ``on_volume``, or
    `LiveSession.wait` for the summary. Use it as a context manager so that
    everything is closed (and the run stopped on an error)::

        with deepz.open_microscope() as scope:
            scope.focus_on_specimen()
            with deepz.live_refocus(scope, frames=20, out="worm.ome.tif") as session:
                for index, volume in session:
                    print(index, volume.shape)  # (9, 512, 512) float32

    Parameters
    ----------
    scope : Microscope
        An open microscope (``plan.config`` is not opened here: it records which).
    plan : RunPlan, optional
        The run. Keyword ``fields`` (any `RunPlan` field: ``frames``, ``out``,
        ``model``, ``planes_um``, ``policy``, ``save_volumes``, ``interval_ms``,
        ``exposure_ms``, ``led_intensity``, ``backend``, ``device``,
        ``allow_model_mismatch``, ``overwrite``, ``max_frames_in_memory``) make one,
        or replace those of ``plan``.
    processor : FrameProcessor, optional
        Refocus with this instead of the plan's model (``backend``, ``device`` and
        ``model`` are then not used; the processor's own planes are).
    on_volume : callable, optional
        ``on_volume(index, volume)``, called on the worker thread for every volume.
    start : bool
        Start at once (default); False returns the session to start later.

    Returns
    -------
    LiveSession

    Raises
    ------
    pydantic.ValidationError
        A plan field that makes no sense (say which).
    inference.InferenceError
        Unknown model, planes outside its range, or (unless allowed) a model that
        does not fit the microscope.
    AcquisitionError, OutputLocationError
        As for `acquisition.acquire_timelapse`.
    """
    plan = plan_from(plan, **fields)
    if plan.frames is None:
        raise ValueError(
            "live_refocus records a known number of frames: set plan.frames (the "
            "panel runs open-ended sessions in chunks)."
        )
    if processor is None:
        refocuser_processor = RefocuserProcessor(
            plan.model or LIVE_MODEL_NAME,
            plan.planes_um,
            backend=plan.backend,
            device=plan.device,
            allow_mismatch=plan.allow_model_mismatch,
            # a microscope without a pixel-size calibration cannot be checked:
            # refused unless the mismatch is allowed (then recorded)
            require_pixel_size=True,
        )
        # fail fast (before files or threads): the same check runs again in setup
        optics = microscope_optics(scope)
        refocuser_processor.check_microscope(
            scope.core.getPixelSizeUm() or None,
            na=optics["na"],
            emission_wavelength_um=optics["emission_wavelength_um"],
        )
        processor = refocuser_processor
    session = LiveSession(
        scope,
        processor,
        frames=plan.frames,
        out=plan.out,
        interval_ms=plan.interval_ms,
        exposure_ms=plan.exposure_ms,
        policy=plan.policy,
        volumes_out=_volumes_path(plan.save_volumes, plan.out),
        led_intensity=plan.led_intensity,
        overwrite=plan.overwrite,
        max_frames_in_memory=plan.max_frames_in_memory,
        on_volume=on_volume,
        plan=plan.to_metadata(),
    )
    if start:
        session.start()
    return session


def _volumes_path(save_volumes: bool | Path, raw: Path) -> Path | None:
    if save_volumes is True:
        return default_volume_path(raw)
    if save_volumes is False:
        return None
    return Path(save_volumes)
