"""Everything a live session checks and sets before its first frame: `PreparedRun`.

`prepare_live_run` checks the settings, the processor's planes, the microscope (idle,
monochrome camera) and both outputs (folders created, nothing overwritten unless
asked, enough free disk for ``policy="all"`` volumes), sets the LED and the exposure,
and returns the `PreparedRun`: the files, the frames' layout, the MDA sequence and the
metadata for the raw file and for `FrameProcessor.setup`. Whatever fails here fails
before any light reaches the sample and before any file is written.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import useq

from deepz_live.acquisition._dose import zstack_plane_count
from deepz_live.acquisition._errors import AcquisitionError, OutputLocationError
from deepz_live.acquisition._frame_processor import (
    SETUP_METADATA_VERSION,
    microscope_optics,
)
from deepz_live.acquisition._planes import PlaneError, check_planes
from deepz_live.acquisition._run_checks import (
    DISK_MARGIN,
    check_idle,
    check_timelapse_settings,
    frame_layout,
    human_bytes,
    prepare_output,
    set_led_intensity,
)
from deepz_live.acquisition._run_records import build_run_metadata

if TYPE_CHECKING:
    import numpy as np

    from deepz_live.acquisition._frame_processor import FrameProcessor
    from deepz_live.acquisition._live_policy import Policy
    from deepz_live.acquisition._scope import Microscope

__all__ = ["PreparedRun", "default_volume_path", "prepare_live_run"]


def default_volume_path(raw_output: str | Path) -> Path:
    """Where the volumes of a raw file go by default: next to it, same format.

    ``worm.ome.tif`` → ``worm.volumes.ome.tif``; ``worm.ome.zarr`` →
    ``worm.volumes.ome.zarr``; ``worm.tif`` → ``worm.volumes.tif``.
    """
    raw = Path(raw_output)
    name = raw.name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr"):
        if name.endswith(suffix):
            return raw.with_name(f"{name[: -len(suffix)]}.volumes{suffix}")
    return raw.with_name(f"{name}.volumes.ome.tif")


@dataclass(frozen=True)
class PreparedRun:
    """A checked live run, ready to open its raw file and start.

    Attributes
    ----------
    raw_path, volume_path : Path, Path or None
        The raw time-lapse and (when asked for) the volume file, absolute.
    frames : int
        Frames to take.
    planes_um : tuple of float
        Planes of every volume.
    frame_shape, dtype
        ``(height, width)`` and pixel type of every frame.
    zstack_planes : int
        Planes of the z-stack the dose is compared with.
    sequence : useq.MDASequence
        The time-lapse, the focus held where it is.
    run_metadata : dict
        For the raw file (`build_run_metadata`, kind ``live``).
    setup_metadata : dict
        For `FrameProcessor.setup` (version `SETUP_METADATA_VERSION`).
    """

    raw_path: Path
    volume_path: Path | None
    frames: int
    planes_um: tuple[float, ...]
    frame_shape: tuple[int, int]
    dtype: np.dtype
    zstack_planes: int
    sequence: useq.MDASequence
    run_metadata: dict[str, Any]
    setup_metadata: dict[str, Any]


def prepare_live_run(
    scope: Microscope,
    processor: FrameProcessor,
    *,
    frames: int,
    out: Path,
    interval_ms: float,
    exposure_ms: float,
    policy: Policy,
    volumes_out: Path | None,
    led_intensity: float | None,
    overwrite: bool,
    zstack_range_um: float | None,
    zstack_step_um: float | None,
    plan: dict[str, Any] | None = None,
) -> PreparedRun:
    """Check a live run and set the microscope up for it (see the module docstring).

    Raises
    ------
    AcquisitionError
        Invalid settings or planes, a busy microscope, a colour camera.
    OutputLocationError
        An output exists, cannot be written, or the disk is too small.
    """
    if zstack_range_um is None and zstack_step_um is None:
        check_timelapse_settings(frames, interval_ms, exposure_ms)
        planes = _checked_planes(processor)
        zstack_planes = len(planes)
    else:
        range_um = 20.0 if zstack_range_um is None else zstack_range_um
        step_um = 1.0 if zstack_step_um is None else zstack_step_um
        check_timelapse_settings(frames, interval_ms, exposure_ms, range_um, step_um)
        planes = _checked_planes(processor)
        zstack_planes = zstack_plane_count(range_um, step_um)
    core = scope.core
    check_idle(scope)
    frames = int(frames)
    raw = prepare_output(scope, out, frames, overwrite=overwrite)
    (height, width), dtype = frame_layout(scope)
    volume_path = _checked_volume_output(
        scope, volumes_out, raw, frames, (height, width), planes, policy, overwrite
    )
    if led_intensity is not None:
        set_led_intensity(scope, led_intensity)
    core.setExposure(exposure_ms)
    z_um = float(core.getPosition(core.getFocusDevice()))
    sequence = useq.MDASequence.model_validate(
        {
            "time_plan": {"interval": interval_ms / 1000.0, "loops": frames},
            # the focus is held where it is (re-asserted per event when not streamed)
            "stage_positions": [{"z": z_um}],
        }
    )
    settings = {
        "frames": frames,
        "interval_ms": interval_ms,
        "exposure_ms": exposure_ms,
        "led_intensity": led_intensity,
        "policy": policy,
        "planes_um": list(planes),
        "volume_output": None if volume_path is None else str(volume_path),
    }
    return PreparedRun(
        raw_path=raw,
        volume_path=volume_path,
        frames=frames,
        planes_um=planes,
        frame_shape=(height, width),
        dtype=dtype,
        zstack_planes=zstack_planes,
        sequence=sequence,
        run_metadata={
            **build_run_metadata(
                scope, kind="live", sequence=sequence, settings=settings
            ),
            **({} if plan is None else {"plan": plan}),
        },
        setup_metadata={
            "version": SETUP_METADATA_VERSION,
            "pixel_size_um": core.getPixelSizeUm() or None,
            **microscope_optics(scope),
            "exposure_ms": exposure_ms,
            "camera": core.getCameraDevice(),
            "config": str(scope.config_path),
            "frames": frames,
            "policy": policy,
        },
    )


def _checked_planes(processor: FrameProcessor) -> tuple[float, ...]:
    try:
        return check_planes(processor.planes_um)
    except PlaneError as exc:
        raise AcquisitionError(f"The processor's planes_um: {exc}") from None


def _checked_volume_output(
    scope: Microscope,
    volumes_out: Path | None,
    raw: Path,
    frames: int,
    frame_shape: tuple[int, int],
    planes: tuple[float, ...],
    policy: Policy,
    overwrite: bool,
) -> Path | None:
    if volumes_out is None:
        return None
    path = volumes_out.expanduser().absolute()
    if path == raw:
        raise OutputLocationError(
            f"The volume output {path} is the raw output too; give the volumes "
            "their own file (default: next to the raw file, *.volumes.ome.tif)."
        )
    if path.is_dir() and path.suffix != ".zarr":
        raise OutputLocationError(
            f"{path} is a folder; give a file name such as "
            f"{path / 'run.volumes.ome.tif'}."
        )
    if path.exists() and not overwrite:
        raise OutputLocationError(
            f"{path} already exists; choose another volume output or pass --overwrite."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputLocationError(
            f"Cannot create the volume folder {path.parent}: "
            f"{exc.strerror or exc}. Choose a location you can write to."
        ) from exc
    if policy == "all":  # every frame becomes a volume: check the space
        height, width = frame_shape
        needed = frames * len(planes) * height * width * 4 * DISK_MARGIN
        free = shutil.disk_usage(path.parent).free
        if raw.parent.stat().st_dev == path.parent.stat().st_dev:
            bytes_per_pixel = int(scope.core.getBytesPerPixel())
            free -= frames * height * width * bytes_per_pixel
        if needed > free:
            raise OutputLocationError(
                f"Not enough free disk space in {path.parent} for the volumes: "
                f"{frames} volumes of {len(planes)}×{height}×{width} float32 need "
                f"about {human_bytes(needed)}, {human_bytes(max(free, 0))} is "
                "free (after the raw frames). Free some space, save the volumes "
                "elsewhere, use fewer planes, or don't save volumes."
            )
    return path
