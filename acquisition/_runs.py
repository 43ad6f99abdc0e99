"""Scripted acquisitions: a time-lapse or a z-stack, straight to an OME-TIFF.

`acquire_timelapse` and `acquire_zstack` check everything that can be checked before
the first frame (settings, focus travel, the output location and the free disk space:
`acquisition._run_checks`), describe the run for the file
(`acquisition._run_records`), run it on the acquisition thread
(`acquisition._run_sequence`: the acquisition loop live sessions run too, whose
docstring holds the threading contract) and report what it produced
(`acquisition._run_summaries`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import useq

from deepz_live.acquisition._dose import (
    dose_total,
    equivalent_zstack_dose,
    zstack_plane_count,
)
from deepz_live.acquisition._errors import AcquisitionError
from deepz_live.acquisition._ground_truth import (
    check_ground_truth_possible,
    clear_stale_ground_truth,
    write_zstack_ground_truth,
)
from deepz_live.acquisition._run_checks import (
    check_idle,
    check_timelapse_settings,
    check_zstack_settings,
    prepare_output,
    set_led_intensity,
)
from deepz_live.acquisition._run_records import build_run_metadata, open_run_writer
from deepz_live.acquisition._run_sequence import run_sequence
from deepz_live.acquisition._run_summaries import (
    TimelapseSummary,
    ZStackSummary,
    measured_fps,
)

if TYPE_CHECKING:
    from deepz_live.acquisition._run_sequence import ProgressCallback
    from deepz_live.acquisition._scope import Microscope

__all__ = [
    "TimelapseSummary",
    "ZStackSummary",
    "acquire_timelapse",
    "acquire_zstack",
]


def acquire_timelapse(
    scope: Microscope,
    *,
    frames: int,
    interval_ms: float,
    exposure_ms: float,
    out: str | Path,
    led_intensity: float | None = None,
    overwrite: bool = False,
    zstack_range_um: float = 20.0,
    zstack_step_um: float = 1.0,
    progress: ProgressCallback | None = None,
) -> TimelapseSummary:
    """Acquire a single-plane time-lapse into an OME-TIFF (axes ``TYX``).

    Parameters
    ----------
    scope : Microscope
        An open microscope.
    frames : int
        Number of frames (≥ 1).
    interval_ms : float
        Time between frame starts; 0 streams frames as fast as the camera can.
    exposure_ms : float
        Camera exposure.
    out : str or Path
        Output file: ``*.ome.tif``, or ``*.ome.zarr`` (OME-Zarr, ``zarr`` extra).
        Missing folders are created.
    led_intensity : float, optional
        Set the ``LED`` device's ``Intensity`` property first.
    overwrite : bool
        Replace an existing output file.
    zstack_range_um, zstack_step_um : float
        The scanned stack the dose is compared with (default ±10 µm in 1 µm steps,
        21 planes).
    progress : callable, optional
        Called as ``progress(frames_done, frames_total)`` on the calling thread a few
        times a second.

    Returns
    -------
    TimelapseSummary

    Raises
    ------
    AcquisitionError
        Invalid settings, or the acquisition failed (frames so far are saved).
    AcquisitionInterrupted
        Ctrl-C; the frames so far are saved.
    OutputLocationError
        The output cannot be written (exists, unwritable, not enough disk).
    """
    check_timelapse_settings(
        frames, interval_ms, exposure_ms, zstack_range_um, zstack_step_um
    )
    core = scope.core
    check_idle(scope)
    out_path = prepare_output(scope, Path(out), int(frames), overwrite=overwrite)
    if led_intensity is not None:
        set_led_intensity(scope, led_intensity)
    core.setExposure(exposure_ms)

    sequence = useq.MDASequence.model_validate(
        {"time_plan": {"interval": interval_ms / 1000.0, "loops": int(frames)}}
    )
    run_metadata = build_run_metadata(
        scope,
        kind="timelapse",
        sequence=sequence,
        settings={
            "frames": int(frames),
            "interval_ms": interval_ms,
            "exposure_ms": exposure_ms,
            "led_intensity": led_intensity,
        },
    )
    writer = open_run_writer(
        scope, out_path, "TYX", int(frames), run_metadata, overwrite
    )
    result = run_sequence(scope, sequence, writer, int(frames), progress)

    n_planes = zstack_plane_count(zstack_range_um, zstack_step_um)
    doses = [m.get("dose_J_cm2") for m in result.frame_metadata]
    total = dose_total(doses)
    dose_per_frame = None if total is None else total / len(doses)
    return TimelapseSummary(
        frames=result.frames,
        fps=measured_fps([m.get("time_s") for m in result.frame_metadata]),
        output=out_path,
        dose_per_frame_J_cm2=dose_per_frame,
        dose_total_J_cm2=total,
        equivalent_zstack_dose_J_cm2=equivalent_zstack_dose(total, n_planes),
        zstack_planes=n_planes,
        canceled=result.canceled,
    )


def acquire_zstack(
    scope: Microscope,
    *,
    range_um: float,
    step_um: float,
    exposure_ms: float,
    out: str | Path,
    led_intensity: float | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    ground_truth: bool = False,
) -> ZStackSummary:
    """Acquire a z-stack centred on the current focus into an OME-TIFF (``ZYX``).

    Planes run from ``z0 - range/2`` to ``z0 + range/2`` in ``step`` increments
    (useq's ``ZRangeAround``); the focus returns to ``z0`` afterwards.

    Parameters
    ----------
    scope : Microscope
        An open microscope.
    range_um : float
        Total span of the stack in µm (> 0).
    step_um : float
        Plane spacing in µm (0 < step ≤ range).
    exposure_ms : float
        Camera exposure.
    out : str or Path
        Output file: ``*.ome.tif``, or ``*.ome.zarr`` (OME-Zarr, ``zarr`` extra).
        Missing folders are created.
    led_intensity : float, optional
        Set the ``LED`` device's ``Intensity`` property first.
    overwrite : bool
        Replace an existing output file.
    progress : callable, optional
        Called as ``progress(planes_done, planes_total)`` on the calling thread.
    ground_truth : bool
        Simulator only: also write the noise-free twin of every plane and the
        table of objects with their in-focus positions beside the stack
        (`acquisition.write_zstack_ground_truth`).

    Returns
    -------
    ZStackSummary

    Raises
    ------
    AcquisitionError
        Invalid settings, planes outside the focus travel, or a failed acquisition.
    AcquisitionInterrupted
        Ctrl-C; the planes so far are saved.
    OutputLocationError
        The output cannot be written (exists, unwritable, not enough disk).
    """
    check_zstack_settings(range_um, step_um, exposure_ms)
    core = scope.core
    check_idle(scope)
    focus = core.getFocusDevice()
    z0 = float(core.getPosition(focus))
    sequence = useq.MDASequence.model_validate(
        {"z_plan": {"range": range_um, "step": step_um}, "stage_positions": [{"z": z0}]}
    )
    planes = [e.z_pos for e in sequence if e.z_pos is not None]
    limits = scope.focus_limits()
    if limits is not None and (min(planes) < limits[0] or max(planes) > limits[1]):
        raise AcquisitionError(
            f"The stack would span z = {min(planes):g} to {max(planes):g} µm, outside "
            f"the travel of focus device {focus!r} ({limits[0]:g} to {limits[1]:g} "
            "µm). Move the focus or reduce the range."
        )
    out_path = prepare_output(scope, Path(out), len(planes), overwrite=overwrite)
    if ground_truth:
        check_ground_truth_possible(scope)
    clear_stale_ground_truth(out_path, overwrite)
    if led_intensity is not None:
        set_led_intensity(scope, led_intensity)
    core.setExposure(exposure_ms)

    run_metadata = build_run_metadata(
        scope,
        kind="zstack",
        sequence=sequence,
        settings={
            "range_um": range_um,
            "step_um": step_um,
            "center_z_um": z0,
            "planes": len(planes),
            "exposure_ms": exposure_ms,
            "led_intensity": led_intensity,
        },
    )
    writer = open_run_writer(
        scope, out_path, "ZYX", len(planes), run_metadata, overwrite, z_step_um=step_um
    )
    try:
        result = run_sequence(scope, sequence, writer, len(planes), progress)
    finally:
        try:
            scope.move_focus(z0)
        except Exception:  # the run's own error matters more; focus is reported there
            pass
    height, width = writer.frame_shape
    pixel = writer.pixel_size_um
    truth = None
    if ground_truth and result.frame_metadata:
        truth = write_zstack_ground_truth(scope, out_path, result.frame_metadata)
    return ZStackSummary(
        output=out_path,
        shape=[result.frames, height, width],
        voxel_um=[float(step_um), pixel, pixel],
        dose_total_J_cm2=dose_total(
            [m.get("dose_J_cm2") for m in result.frame_metadata]
        ),
        canceled=result.canceled,
        clean_output=None if truth is None else truth.clean,
        objects_output=None if truth is None else truth.objects,
    )
