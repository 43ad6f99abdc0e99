"""Ground truth of a simulated z-stack, saved beside it.

The simulator knows what a real microscope cannot tell: the noise-free image at every
recorded plane and where every object is. `write_zstack_ground_truth` saves both next
to a stack recorded on the simulator, so that refocusing can be scored against clean
planes (``deepz evaluate``; its axial score finds objects as the maxima of the clean
twin, as it would in a real scan), so that training can learn from clean targets
(``deepz train``), and so that any tool can check positions against the truth (the
objects table; `inference.ZStack.objects`):

``<stem>.clean.ome.tif``
    float32 ``ZYX``, the expected camera signal in ADU (offset included, no noise,
    no rounding) of every recorded plane, at that plane's focus, time and bleaching.
    Same pixel size and plane positions as the stack.
``<stem>.objects.csv``
    One row per emitter (worm nucleus or bead): ``id``, ``x_px``, ``y_px`` (pixel
    coordinates in the stack, column and row, sub-pixel), ``x_um``, ``y_um`` (from
    the optical axis), ``depth_um`` (below the coverslip), ``radius_um``,
    ``focus_z_um`` (the focus-drive position at which the object is in best focus,
    on the stack's z axis), ``dz_from_centre_um`` (``focus_z_um`` minus the stack's
    centre plane). Sheets have no objects: the table then has the header only.

Only the simulator has ground truth: a real microscope gives a clear error.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile

from deepz_live.acquisition._errors import AcquisitionError, OutputLocationError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from deepz_live.acquisition._scope import Microscope

__all__ = ["GroundTruthFiles", "ground_truth_paths", "write_zstack_ground_truth"]

OBJECT_COLUMNS = (
    "id",
    "x_px",
    "y_px",
    "x_um",
    "y_um",
    "depth_um",
    "radius_um",
    "focus_z_um",
    "dz_from_centre_um",
)


@dataclass(frozen=True)
class GroundTruthFiles:
    """Where the ground truth of one stack was written."""

    clean: Path
    objects: Path
    n_objects: int


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tif", ".ome.tiff", ".ome.zarr", ".tif", ".tiff"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def ground_truth_paths(stack_path: str | Path) -> tuple[Path, Path]:
    """``(clean twin, objects table)`` paths belonging to a stack file."""
    path = Path(stack_path)
    stem = _stem(path)
    return path.with_name(f"{stem}.clean.ome.tif"), path.with_name(
        f"{stem}.objects.csv"
    )


def check_ground_truth_possible(scope: Microscope) -> None:
    """Fail before any light if ground truth cannot be had."""
    from deepz_live.acquisition.simulator import bench_for

    if bench_for(scope.core) is None:
        raise AcquisitionError(
            "Ground truth exists only on the simulated microscope; drop "
            "--ground-truth for a real one."
        )


def clear_stale_ground_truth(out: Path, overwrite: bool) -> None:
    """Remove (with ``overwrite``) or refuse an earlier recording's ground truth.

    Readers pair ``NAME.clean.ome.tif`` and ``NAME.objects.csv`` with
    ``NAME.ome.tif`` by name: left from an earlier recording, they would describe
    another specimen. Called before any light, whether or not this run saves
    ground truth of its own.
    """
    for path in ground_truth_paths(out):
        if not path.exists():
            continue
        if not overwrite:
            raise OutputLocationError(
                f"{path} (ground truth of an earlier recording) already exists; "
                "choose another output path or pass --overwrite."
            )
        try:
            path.unlink()
        except OSError as exc:
            raise OutputLocationError(
                f"Cannot remove {path} ({exc.strerror or exc}), the ground truth "
                f"of the recording being replaced; remove it by hand."
            ) from exc


def write_zstack_ground_truth(
    scope: Microscope,
    stack_path: str | Path,
    frame_metadata: Sequence[dict[str, Any]],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> GroundTruthFiles:
    """Write the noise-free twin and the objects table of a simulated z-stack.

    Parameters
    ----------
    scope : Microscope
        The simulated microscope that recorded the stack, with its settings
        unchanged since (exposure, light, specimen, region of interest).
    stack_path : str or Path
        The stack's file; the ground truth goes beside it (see module docstring).
    frame_metadata : sequence of dict
        The recorded planes' metadata, in file order: ``z_um``, ``time_s`` and
        ``bleach_factor`` of each (``read_frame_metadata`` gives it).
    progress : callable, optional
        ``progress(planes_done, planes_total)``.

    Raises
    ------
    AcquisitionError
        Not the simulator, or metadata without plane positions.
    """
    from deepz_live.acquisition.simulator import bench_for

    bench = bench_for(scope.core)
    if bench is None:
        raise AcquisitionError("Ground truth exists only on the simulated microscope.")
    core = scope.core
    x0, y0, width, height = (int(v) for v in core.getROI())
    z_um = []
    clean = np.empty((len(frame_metadata), height, width), dtype=np.float32)
    for k, meta in enumerate(frame_metadata):
        z = meta.get("z_um")
        if z is None or not math.isfinite(float(z)):
            raise AcquisitionError(
                f"Plane {k} of {stack_path} has no z position; cannot render its "
                "ground truth."
            )
        z_um.append(float(z))
        image = bench.clean_image_adu(
            z_um=float(z),
            t_s=meta.get("time_s"),
            bleach_factor=meta.get("bleach_factor"),
        )
        clean[k] = image[y0 : y0 + height, x0 : x0 + width]
        if progress is not None:
            progress(k + 1, len(frame_metadata))
    clean_path, objects_path = ground_truth_paths(stack_path)
    pixel = core.getPixelSizeUm() or None
    steps = np.diff(z_um)
    metadata: dict[str, Any] = {
        "axes": "ZYX",
        "Name": f"noise-free twin of {Path(stack_path).name}",
        "Plane": {"PositionZ": z_um, "PositionZUnit": ["µm"] * len(z_um)},
    }
    if pixel:
        metadata.update(
            PhysicalSizeX=pixel,
            PhysicalSizeXUnit="µm",
            PhysicalSizeY=pixel,
            PhysicalSizeYUnit="µm",
        )
    if steps.size:
        metadata.update(
            PhysicalSizeZ=float(np.median(np.abs(steps))), PhysicalSizeZUnit="µm"
        )
    tifffile.imwrite(clean_path, clean, ome=True, metadata=metadata)
    n = _write_objects(bench, objects_path, pixel, (x0, y0), z_um)
    return GroundTruthFiles(clean=clean_path, objects=objects_path, n_objects=n)


def _write_objects(
    bench: Any,
    path: Path,
    pixel_um: float | None,
    roi_origin: tuple[int, int],
    z_um: Sequence[float],
) -> int:
    table = bench.objects_table()
    camera = bench.camera
    rows_full, cols_full = camera.sensor_shape()
    pixel = pixel_um or camera.pixel_um()
    # pixel centres: the optical axis is the centre of the full (binned) sensor
    x_px = table["x_um"] / pixel + (cols_full - 1) / 2 - roi_origin[0]
    y_px = table["y_um"] / pixel + (rows_full - 1) / 2 - roi_origin[1]
    centre = (min(z_um) + max(z_um)) / 2 if z_um else 0.0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(OBJECT_COLUMNS)
        for i in range(x_px.size):
            writer.writerow(
                [
                    i,
                    f"{x_px[i]:.3f}",
                    f"{y_px[i]:.3f}",
                    f"{table['x_um'][i]:.4f}",
                    f"{table['y_um'][i]:.4f}",
                    f"{table['depth_um'][i]:.4f}",
                    f"{table['radius_um'][i]:.4f}",
                    f"{table['focus_stage_um'][i]:.4f}",
                    f"{table['focus_stage_um'][i] - centre:.4f}",
                ]
            )
    return int(x_px.size)
