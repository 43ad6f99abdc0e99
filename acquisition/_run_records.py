"""What a run writes beside its pixels, and the writer it writes with.

`build_run_metadata` is the run's record (settings, the MDA sequence, every device
property, software version), saved once per file; `frame_record` is each frame's
(time, exposure, z and whatever the camera reports, such as the simulator's dose).
`open_run_writer` opens the OME-TIFF or OME-Zarr writer sized for the run's frames.
Scripted runs and live sessions share all three, so a file explains itself the same
way whoever wrote it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from deepz_live.acquisition._frames import open_writer
from deepz_live.acquisition._run_checks import frame_layout

if TYPE_CHECKING:
    from pathlib import Path

    import useq

    from deepz_live.acquisition._frames import OmeTiffWriter, OmeZarrWriter
    from deepz_live.acquisition._scope import Microscope

__all__ = ["build_run_metadata", "frame_record", "open_run_writer"]

_BIGTIFF_ABOVE_BYTES = 3_500_000_000


def build_run_metadata(
    scope: Microscope,
    *,
    kind: str,
    sequence: useq.MDASequence,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Everything needed to understand the file later, as plain JSON types.

    Parameters
    ----------
    scope : Microscope
        The microscope, as it is set up for the run.
    kind : str
        ``"timelapse"``, ``"zstack"`` or ``"live"``.
    sequence : useq.MDASequence
        The run's sequence.
    settings : dict
        The run's own settings (frames, exposure, ...), JSON types only.
    """
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


def frame_record(event: useq.MDAEvent, meta: Any) -> dict[str, Any]:
    """Per-frame metadata for the file: the camera's own, else the runner's.

    ``meta`` is the frame metadata pymmcore-plus passes to ``frameReady``.
    """
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


def open_run_writer(
    scope: Microscope,
    out: Path,
    axes: str,
    frames: int,
    run_metadata: dict[str, Any],
    overwrite: bool,
    z_step_um: float | None = None,
) -> OmeTiffWriter | OmeZarrWriter:
    """Open the writer for ``frames`` camera frames (BigTIFF when they need it)."""
    (height, width), dtype = frame_layout(scope)
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
