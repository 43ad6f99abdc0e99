"""What every run checks and sets before its first frame.

Scripted runs (`acquire_timelapse`, `acquire_zstack`) and live sessions share these
rules, so each lives here once: valid settings, an idle microscope with a monochrome
camera, an output location that can be written with room for the whole run, and the
LED's intensity. Whatever fails here fails before any light reaches the sample and
before any file is written.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from typing import TYPE_CHECKING, Any

import numpy as np

from deepz_live.acquisition._errors import AcquisitionError, OutputLocationError

if TYPE_CHECKING:
    from pathlib import Path

    from deepz_live.acquisition._scope import Microscope

__all__ = [
    "DISK_MARGIN",
    "LED_DEVICE",
    "LED_INTENSITY_PROPERTY",
    "MAX_EXPOSURE_MS",
    "check_exposure",
    "check_idle",
    "check_timelapse_settings",
    "check_zstack_settings",
    "frame_layout",
    "human_bytes",
    "prepare_output",
    "set_led_intensity",
]

MAX_EXPOSURE_MS = 600_000.0
"""Longest exposure accepted (10 min); anything longer is almost surely a typo."""

LED_DEVICE = "LED"
LED_INTENSITY_PROPERTY = "Intensity"

DISK_MARGIN = 1.05
"""Free disk space asked for beyond a run's raw size (file structure, metadata)."""


# -- settings ------------------------------------------------------------------------
def check_exposure(exposure_ms: float) -> None:
    """Refuse an exposure that is not positive or longer than `MAX_EXPOSURE_MS`."""
    if not (math.isfinite(exposure_ms) and exposure_ms > 0):
        raise AcquisitionError(f"exposure must be more than 0 ms, got {exposure_ms}.")
    if exposure_ms > MAX_EXPOSURE_MS:
        raise AcquisitionError(
            f"exposure {exposure_ms:g} ms is longer than 10 minutes; give it in "
            "milliseconds (e.g. --exposure-ms 10)."
        )


def check_timelapse_settings(
    frames: Any,
    interval_ms: float,
    exposure_ms: float,
    zstack_range_um: float = 20.0,
    zstack_step_um: float = 1.0,
) -> None:
    """The checks of a time-lapse's settings, before anything moves.

    ``zstack_range_um`` and ``zstack_step_um`` describe the scanned stack the run's
    dose is compared with.
    """
    check_exposure(exposure_ms)
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


def check_zstack_settings(range_um: float, step_um: float, exposure_ms: float) -> None:
    """The checks of a z-stack's settings: exposure, range > 0, 0 < step ≤ range."""
    check_exposure(exposure_ms)
    if not (math.isfinite(range_um) and range_um > 0):
        raise AcquisitionError(f"z range must be more than 0 µm, got {range_um}.")
    if not (math.isfinite(step_um) and step_um > 0):
        raise AcquisitionError(f"z step must be more than 0 µm, got {step_um}.")
    if step_um > range_um:
        raise AcquisitionError(
            f"z step ({step_um} µm) is larger than the range ({range_um} µm); use a "
            "step no larger than the range."
        )


# -- the microscope ------------------------------------------------------------------
def check_idle(scope: Microscope) -> None:
    """Refuse to start while another acquisition runs on ``scope``."""
    if scope.core.mda.is_running():
        raise AcquisitionError(
            "Another acquisition is running on this microscope; wait for it or "
            "cancel it (core.mda.cancel()) first."
        )


def frame_layout(scope: Microscope) -> tuple[tuple[int, int], np.dtype]:
    """``(height, width)`` and pixel type of the camera's frames; monochrome only."""
    core = scope.core
    if core.getNumberOfComponents() != 1:
        raise AcquisitionError(
            f"Camera {core.getCameraDevice()!r} delivers colour images; deepz-live "
            "records monochrome (fluorescence) frames only."
        )
    shape = (int(core.getImageHeight()), int(core.getImageWidth()))
    dtype = np.dtype(f"uint{8 * int(core.getBytesPerPixel())}")
    return shape, dtype


def set_led_intensity(scope: Microscope, value: float) -> None:
    """Set the ``LED`` device's ``Intensity`` property (%), or say how to do without."""
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


# -- the output ----------------------------------------------------------------------
def prepare_output(
    scope: Microscope, out: Path, frames: int, *, overwrite: bool
) -> Path:
    """Check (and create) the output folder, the file and the free space.

    Returns the absolute output path.
    """
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
    (height, width), dtype = frame_layout(scope)
    needed = frames * height * width * dtype.itemsize * DISK_MARGIN
    free = shutil.disk_usage(folder).free
    if out.exists():
        free += out.stat().st_size  # overwriting gives its space back
    if needed > free:
        raise OutputLocationError(
            f"Not enough free disk space in {folder}: the run needs about "
            f"{human_bytes(needed)} ({frames} frames of {height}×{width} "
            f"{dtype.name}), {human_bytes(free)} is free. Free some space, write "
            "elsewhere, or take fewer frames."
        )
    return out


def human_bytes(n: float) -> str:
    """``1234567`` → ``'1.2 MB'`` (decimal units)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover
