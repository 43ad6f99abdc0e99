"""Scripted acquisitions: a time-lapse or a z-stack, straight to an OME-TIFF.

Threading contract
------------------
The MDA runs on a worker thread ("deepz-acquisition"). Its ``frameReady`` callback
only appends the frame to the `OmeTiffWriter` (one uncompressed page write, well under
a millisecond at 512²) and records the frame's metadata; it never blocks on anything
else. The calling thread waits, reports progress, and turns Ctrl-C into
``core.mda.cancel()``, so that the runner finishes the way it would after any cancel
(camera stream stopped, sequence torn down) before the file is closed.

Everything that can be checked is checked before the first frame: settings, focus
travel, the output location and the free disk space.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import useq
from pymmcore_plus.mda import FinishReason

from deepz_live.acquisition._dose import (
    dose_total,
    equivalent_zstack_dose,
    zstack_plane_count,
)
from deepz_live.acquisition._errors import (
    AcquisitionError,
    AcquisitionInterrupted,
    OutputLocationError,
)
from deepz_live.acquisition._frames import OmeTiffWriter, OmeZarrWriter, open_writer
from deepz_live.acquisition._ground_truth import (
    check_ground_truth_possible,
    clear_stale_ground_truth,
    write_zstack_ground_truth,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from deepz_live.acquisition._scope import Microscope

    ProgressCallback = Callable[[int, int], object]

__all__ = [
    "TimelapseSummary",
    "ZStackSummary",
    "acquire_timelapse",
    "acquire_zstack",
]

MAX_EXPOSURE_MS = 600_000.0
"""Longest exposure accepted (10 min); anything longer is almost surely a typo."""

LED_DEVICE = "LED"
LED_INTENSITY_PROPERTY = "Intensity"

_DISK_MARGIN = 1.05
_BIGTIFF_ABOVE_BYTES = 3_500_000_000
_POLL_S = 0.05


@dataclass(frozen=True)
class TimelapseSummary:
    """What a time-lapse produced.

    Attributes
    ----------
    frames : int
        Frames written.
    fps : float or None
        Frame rate measured from the frames' timestamps (None for fewer than two).
    output : Path
        The OME-TIFF.
    dose_per_frame_J_cm2, dose_total_J_cm2 : float or None
        Light dose on the sample per frame (mean) and for the whole run, from the
        camera's per-frame metadata. None when the camera does not report dose (a
        real microscope).
    equivalent_zstack_dose_J_cm2 : float or None
        Dose the same run would have cost as scanned z-stacks (one stack of
        ``zstack_planes`` planes per time point): what single-plane Deep-Z saves.
    zstack_planes : int
        Plane count of that equivalent stack.
    canceled : bool
        The run was canceled (``core.mda.cancel()``) before all frames were taken.
    """

    frames: int
    fps: float | None
    output: Path
    dose_per_frame_J_cm2: float | None
    dose_total_J_cm2: float | None
    equivalent_zstack_dose_J_cm2: float | None
    zstack_planes: int
    canceled: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary printed by ``deepz acquire --json``."""
        return {
            "frames": self.frames,
            "fps": _significant(self.fps, 4),
            "output": str(self.output),
            "dose_per_frame_J_cm2": _significant(self.dose_per_frame_J_cm2),
            "dose_total_J_cm2": _significant(self.dose_total_J_cm2),
            "equivalent_zstack_dose_J_cm2": _significant(
                self.equivalent_zstack_dose_J_cm2
            ),
        }


def _significant(value: float | None, digits: int = 9) -> float | None:
    """Round for display: dose sums carry float noise (0.0020000000000000013)."""
    return None if value is None else float(f"{value:.{digits}g}")


@dataclass(frozen=True)
class ZStackSummary:
    """What a z-stack produced.

    Attributes
    ----------
    output : Path
        The OME-TIFF.
    shape : list of int
        ``[Z, Y, X]`` of the written stack.
    voxel_um : list of float or None
        ``[z, y, x]`` voxel size in µm; y/x are None without a pixel-size calibration.
    dose_total_J_cm2 : float or None
        Light dose of the whole stack, when the camera reports it.
    canceled : bool
        The run was canceled before all planes were taken.
    clean_output, objects_output : Path or None
        The simulator's ground truth beside the stack (``ground_truth=True``).
    """

    output: Path
    shape: list[int]
    voxel_um: list[float | None]
    dose_total_J_cm2: float | None = None
    canceled: bool = False
    clean_output: Path | None = None
    objects_output: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary printed by ``deepz zstack --json``."""
        summary: dict[str, Any] = {
            "output": str(self.output),
            "shape": self.shape,
            "voxel_um": self.voxel_um,
        }
        if self.clean_output is not None:
            summary["clean_output"] = str(self.clean_output)
        if self.objects_output is not None:
            summary["objects_output"] = str(self.objects_output)
        return summary


# -- public entry points -------------------------------------------------------------
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
    _check_timelapse_settings(
        frames, interval_ms, exposure_ms, zstack_range_um, zstack_step_um
    )
    core = scope.core
    _check_idle(scope)
    out_path = _prepare_output(scope, Path(out), int(frames), overwrite=overwrite)
    if led_intensity is not None:
        _set_led_intensity(scope, led_intensity)
    core.setExposure(exposure_ms)

    sequence = useq.MDASequence.model_validate(
        {"time_plan": {"interval": interval_ms / 1000.0, "loops": int(frames)}}
    )
    run_metadata = _run_metadata(
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
    writer = _open_writer(scope, out_path, "TYX", int(frames), run_metadata, overwrite)
    result = _run(scope, sequence, writer, int(frames), progress)

    n_planes = zstack_plane_count(zstack_range_um, zstack_step_um)
    doses = [m.get("dose_J_cm2") for m in result.frame_metadata]
    total = dose_total(doses)
    dose_per_frame = None if total is None else total / len(doses)
    return TimelapseSummary(
        frames=result.frames,
        fps=_fps([m.get("time_s") for m in result.frame_metadata]),
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
    _check_exposure(exposure_ms)
    if not (math.isfinite(range_um) and range_um > 0):
        raise AcquisitionError(f"z range must be more than 0 µm, got {range_um}.")
    if not (math.isfinite(step_um) and step_um > 0):
        raise AcquisitionError(f"z step must be more than 0 µm, got {step_um}.")
    if step_um > range_um:
        raise AcquisitionError(
            f"z step ({step_um} µm) is larger than the range ({range_um} µm); use a "
            "step no larger than the range."
        )
    core = scope.core
    _check_idle(scope)
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
    out_path = _prepare_output(scope, Path(out), len(planes), overwrite=overwrite)
    if ground_truth:
        check_ground_truth_possible(scope)
    clear_stale_ground_truth(out_path, overwrite)
    if led_intensity is not None:
        _set_led_intensity(scope, led_intensity)
    core.setExposure(exposure_ms)

    run_metadata = _run_metadata(
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
    writer = _open_writer(
        scope, out_path, "ZYX", len(planes), run_metadata, overwrite, z_step_um=step_um
    )
    try:
        result = _run(scope, sequence, writer, len(planes), progress)
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


# -- running -------------------------------------------------------------------------
@dataclass
class _RunResult:
    frames: int
    frame_metadata: list[dict[str, Any]]
    canceled: bool


def _run(
    scope: Microscope,
    sequence: useq.MDASequence,
    writer: OmeTiffWriter | OmeZarrWriter,
    expected: int,
    progress: ProgressCallback | None,
) -> _RunResult:
    """Run ``sequence``, writing every frame; close the file whatever happens."""
    core = scope.core
    lock = threading.Lock()
    frame_metadata: list[dict[str, Any]] = []
    callback_errors: list[BaseException] = []
    run_errors: list[BaseException] = []

    def on_frame(image: np.ndarray, event: useq.MDAEvent, meta: Any) -> None:
        # acquisition thread: write and record, nothing else
        with lock:
            if writer.closed or callback_errors:
                return
            try:
                record = _frame_record(event, meta)
                writer.append(image, record)
                frame_metadata.append(record)
            except BaseException as exc:
                callback_errors.append(exc)
                core.mda.cancel()

    def run() -> None:
        try:
            core.mda.run(sequence)
        except BaseException as exc:
            run_errors.append(exc)

    interrupted = False
    thread = threading.Thread(target=run, name="deepz-acquisition", daemon=True)
    core.mda.events.frameReady.connect(on_frame)
    try:
        thread.start()
        try:
            while thread.is_alive():
                thread.join(_POLL_S)
                if progress is not None:
                    progress(writer.frames_written, expected)
        except KeyboardInterrupt:
            interrupted = True
            core.mda.cancel()
            thread.join()
        canceled = core.mda.status.finish_reason == FinishReason.CANCELED
        with lock:
            if not callback_errors and not run_errors and not interrupted:
                writer.run_metadata["result"] = {
                    "frames": writer.frames_written,
                    "canceled": canceled,
                    "dose_total_J_cm2": dose_total(
                        [m.get("dose_J_cm2") for m in frame_metadata]
                    ),
                }
            writer.close()
    finally:
        core.mda.events.frameReady.disconnect(on_frame)
        with lock:
            writer.close()
        if core.isSequenceRunning():
            core.stopSequenceAcquisition()

    saved = writer.frames_written
    where = _saved_message(saved, writer.path)
    if interrupted:
        raise AcquisitionInterrupted(
            f"Acquisition interrupted after {saved} of {expected} frames; {where}.",
            frames_saved=saved,
            output=writer.path if saved else None,
        )
    if callback_errors or run_errors:
        error = (callback_errors or run_errors)[0]
        raise AcquisitionError(
            f"Acquisition failed after {saved} of {expected} frames "
            f"({_describe(error)}); {where}."
        ) from error
    if saved < expected and not canceled:
        raise AcquisitionError(
            f"The camera delivered only {saved} of {expected} frames; {where}. "
            "Check the log for camera warnings."
        )
    if progress is not None:
        progress(saved, expected)
    return _RunResult(saved, frame_metadata, canceled)


def _frame_record(event: useq.MDAEvent, meta: Any) -> dict[str, Any]:
    """Per-frame metadata for the file: the camera's own, else the runner's."""
    record: dict[str, Any] = {
        "time_s": float(meta.get("runner_time_ms", 0.0)) / 1000.0,
        "exposure_ms": meta.get("exposure_ms"),
    }
    position = meta.get("position") or {}
    z_um = position.get("z", event.z_pos)
    if z_um is not None:
        record["z_um"] = float(z_um)
    camera = meta.get("camera_metadata") or {}
    # streamed frames pass through Micro-Manager's buffer, which makes every value text
    record.update({key: _number_or_text(value) for key, value in camera.items()})
    record["index"] = dict(event.index)
    return record


def _number_or_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    return int(value) if value.strip().lstrip("+-").isdigit() else number


# -- checks --------------------------------------------------------------------------
def _check_timelapse_settings(
    frames: Any,
    interval_ms: float,
    exposure_ms: float,
    zstack_range_um: float = 20.0,
    zstack_step_um: float = 1.0,
) -> None:
    """The checks of a time-lapse's settings, before anything moves."""
    _check_exposure(exposure_ms)
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)):
        raise AcquisitionError(f"frames must be a whole number, got {frames!r}.")
    if frames < 1:
        raise AcquisitionError(f"frames must be at least 1, got {frames}.")
    if not (math.isfinite(interval_ms) and interval_ms >= 0):
        raise AcquisitionError(
            f"interval must be 0 ms (as fast as possible) or more, got {interval_ms}."
        )
    if not (zstack_range_um > 0 and 0 < zstack_step_um <= zstack_range_um):
        raise AcquisitionError(
            "The comparison z-stack needs range > 0 and 0 < step ≤ range, got "
            f"range {zstack_range_um} µm, step {zstack_step_um} µm."
        )


def _check_exposure(exposure_ms: float) -> None:
    if not (math.isfinite(exposure_ms) and exposure_ms > 0):
        raise AcquisitionError(f"exposure must be more than 0 ms, got {exposure_ms}.")
    if exposure_ms > MAX_EXPOSURE_MS:
        raise AcquisitionError(
            f"exposure {exposure_ms:g} ms is longer than 10 minutes; give it in "
            "milliseconds (e.g. --exposure-ms 10)."
        )


def _check_idle(scope: Microscope) -> None:
    if scope.core.mda.is_running():
        raise AcquisitionError(
            "Another acquisition is running on this microscope; wait for it or "
            "cancel it (core.mda.cancel()) first."
        )


def _frame_layout(scope: Microscope) -> tuple[tuple[int, int], np.dtype]:
    core = scope.core
    if core.getNumberOfComponents() != 1:
        raise AcquisitionError(
            f"Camera {core.getCameraDevice()!r} delivers colour images; deepz-live "
            "records monochrome (fluorescence) frames only."
        )
    shape = (int(core.getImageHeight()), int(core.getImageWidth()))
    dtype = np.dtype(f"uint{8 * int(core.getBytesPerPixel())}")
    return shape, dtype


def _prepare_output(
    scope: Microscope, out: Path, frames: int, *, overwrite: bool
) -> Path:
    """Check (and create) the output folder, the file and the free space."""
    out = out.expanduser().absolute()
    if out.is_dir():
        raise OutputLocationError(
            f"{out} is a folder; give a file name such as {out / 'run.ome.tif'}."
        )
    if out.exists() and not overwrite:
        raise OutputLocationError(
            f"{out} already exists; choose another output path or pass --overwrite."
        )
    folder = out.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputLocationError(
            f"Cannot create output folder {folder}: {exc.strerror or exc}. Choose a "
            "location you can write to."
        ) from exc
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OutputLocationError(
            f"Output folder {folder} is not writable ({exc.strerror or exc}); choose "
            "a location you can write to."
        ) from exc
    (height, width), dtype = _frame_layout(scope)
    needed = frames * height * width * dtype.itemsize * _DISK_MARGIN
    free = shutil.disk_usage(folder).free
    if out.exists():
        free += out.stat().st_size  # overwriting gives its space back
    if needed > free:
        raise OutputLocationError(
            f"Not enough free disk space in {folder}: the run needs about "
            f"{_human_bytes(needed)} ({frames} frames of {height}×{width} "
            f"{dtype.name}), {_human_bytes(free)} is free. Free some space, write "
            "elsewhere, or take fewer frames."
        )
    return out


def _open_writer(
    scope: Microscope,
    out: Path,
    axes: str,
    frames: int,
    run_metadata: dict[str, Any],
    overwrite: bool,
    z_step_um: float | None = None,
) -> OmeTiffWriter | OmeZarrWriter:
    (height, width), dtype = _frame_layout(scope)
    expected_bytes = frames * height * width * dtype.itemsize
    return open_writer(
        out,
        axes=axes,
        dtype=dtype,
        frame_shape=(height, width),
        pixel_size_um=scope.core.getPixelSizeUm() or None,
        z_step_um=z_step_um,
        run_metadata=run_metadata,
        overwrite=overwrite,
        bigtiff=expected_bytes > _BIGTIFF_ABOVE_BYTES,
    )


def _set_led_intensity(scope: Microscope, value: float) -> None:
    core = scope.core
    if LED_DEVICE not in core.getLoadedDevices() or not core.hasProperty(
        LED_DEVICE, LED_INTENSITY_PROPERTY
    ):
        raise AcquisitionError(
            f"This microscope has no {LED_DEVICE}.{LED_INTENSITY_PROPERTY} property "
            "to set the LED intensity with; set the light source's own property "
            "instead (deepz: --set DEVICE,PROPERTY,VALUE)."
        )
    try:
        scope.set_property(LED_DEVICE, LED_INTENSITY_PROPERTY, f"{value:g}")
    except Exception as exc:
        raise AcquisitionError(str(exc)) from exc


# -- metadata ------------------------------------------------------------------------
def _run_metadata(
    scope: Microscope,
    *,
    kind: str,
    sequence: useq.MDASequence,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Everything needed to understand the file later, as plain JSON types."""
    from importlib.metadata import PackageNotFoundError, version

    core = scope.core
    try:
        deepz_version = version("deepz-live")
    except PackageNotFoundError:
        deepz_version = "unknown"
    devices: dict[str, dict[str, str]] = {}
    for device, prop, value in core.getSystemStateCache():
        devices.setdefault(device, {})[prop] = value
    return {
        "kind": kind,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "software": f"deepz-live {deepz_version}",
        "config": str(scope.config_path),
        "camera": core.getCameraDevice(),
        "focus_device": core.getFocusDevice(),
        "focus_z_um": float(core.getPosition(core.getFocusDevice())),
        "pixel_size_um": core.getPixelSizeUm() or None,
        "settings": settings,
        "mda_sequence": json.loads(sequence.model_dump_json(exclude_unset=True)),
        "devices": devices,
    }


def _fps(times: list[Any]) -> float | None:
    numbers = [t for t in times if isinstance(t, (int, float))]
    if len(numbers) < 2 or len(numbers) != len(times):
        return None
    span = numbers[-1] - numbers[0]
    return (len(numbers) - 1) / span if span > 0 else None


def _saved_message(saved: int, path: Path) -> str:
    if saved == 0:
        return "no frames were saved"
    return f"the {saved} frame{'s' if saved != 1 else ''} acquired are saved in {path}"


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover
