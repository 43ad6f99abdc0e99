"""Read z-stacks (the raw material of Deep-Z training) from TIFF files.

`read_stacks` understands three flavours of file:

* deepz-live's own OME-TIFFs (``deepz zstack``): voxel size from OME-XML, per-plane z
  from the exact per-frame JSON, and optics (NA, emission wavelength) and camera
  offset from the run metadata JSON (`ome_metadata`), and the simulator's ground
  truth where it saved one (`ground_truth`).
* Generic OME-TIFF and ImageJ hyperstacks with axes ZYX, TZYX (one stack per time
  point), ZCYX or CZYX (pick a channel).
* Plain multi-page TIFFs (pages = planes), which carry no voxel size: the caller
  supplies it (``voxel_um=``, ``--voxel-um Z,Y,X`` on the command line).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tifffile

from deepz_live.inference._errors import StackFormatError
from deepz_live.inference._ground_truth import ground_truth
from deepz_live.inference._stack_metadata import (
    FileMetadata,
    imagej_metadata,
    ome_metadata,
)
from deepz_live.inference._zstack import ZStack

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["read_stacks"]

_VOXEL_HINT = (
    "Give the voxel size in µm: voxel_um=(z, y, x) in Python, or --voxel-um Z,Y,X on "
    "the command line (e.g. --voxel-um 0.3,0.13,0.13)."
)


def read_stacks(
    path: str | Path,
    *,
    channel: int | None = None,
    voxel_um: Sequence[float] | None = None,
) -> list[ZStack]:
    """Read the z-stack(s) in a TIFF file.

    Parameters
    ----------
    path : str or Path
        An OME-TIFF (deepz-live's own or any other), an ImageJ hyperstack, or a plain
        multi-page TIFF whose pages are z planes.
    channel : int, optional
        Which channel to read from a multi-channel file (required there).
    voxel_um : sequence of 3 floats, optional
        ``(z, y, x)`` voxel size in µm. Overrides whatever the file records (plane
        positions become ``index × z``); required when the file records none.

    Returns
    -------
    list of ZStack
        One stack per time point (a single one for a plain z-stack), planes ordered
        by increasing z.

    Raises
    ------
    StackFormatError
        The file is missing or not a TIFF, holds no z-stack (a 2-D image, a single
        plane, a time-lapse without z), has axes this reader does not understand, a
        channel is needed or out of range, or the voxel size is unknown.
    """
    path = Path(path)
    override = _check_voxel_override(voxel_um, path)
    if not path.exists():
        raise StackFormatError(f"{path}: no such file. Check the path.")
    if path.is_dir():
        raise StackFormatError(
            f"{path} is a folder, not a TIFF file (OME-Zarr is not read here; "
            "record z-stacks as OME-TIFF, the default of `deepz zstack`)."
        )
    try:
        tif = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, ValueError, OSError) as exc:
        raise StackFormatError(
            f"{path} is not a readable TIFF file ({exc}). z-stacks are read from "
            "OME-TIFF or ImageJ TIFF; in Fiji: File > Save As > Tiff."
        ) from exc
    with tif:
        if not tif.series:
            raise StackFormatError(f"{path} holds no images.")
        series = tif.series[0]
        axes = series.get_axes(False)
        try:
            data: np.ndarray = series.asarray().reshape(series.get_shape(False))
        except (tifffile.TiffFileError, ValueError, OSError) as exc:
            raise StackFormatError(
                f"{path}: its pixel data cannot be read ({exc}); the file may be "
                "truncated (a run that stopped early) or damaged."
            ) from exc
        if tif.is_ome and tif.ome_metadata:
            meta = ome_metadata(tif.ome_metadata, path)
            kind = "ome"
        elif tif.is_imagej:
            meta = imagej_metadata(tif)
            kind = "imagej"
        else:
            meta = FileMetadata()
            kind = "plain"
    data, axes = _to_tczyx(data, axes, kind, path)
    n_t, n_c, n_z = data.shape[:3]
    c_index = _pick_channel(n_c, channel, meta.channel_names, path)
    if n_z < 2:
        raise StackFormatError(
            f"{path} has {n_z} plane along z"
            + (f" and {n_t} time points (a time-lapse)" if n_t > 1 else "")
            + "; a z-stack needs at least 2 planes. Record one with `deepz zstack`"
            + (
                ", or, if those time points are z planes, relabel them (Fiji: "
                "Image > Properties, swap slices and frames)."
                if n_t > 1
                else "."
            )
        )

    dz: float | None
    if override is not None:
        dz, py, px = override
    else:
        dz = meta.dz_um
        py, px = meta.pixel_um or (math.nan, math.nan)
        missing = []
        if meta.pixel_um is None:
            missing.append("pixel size")
        if dz is None and not meta.plane_z_um:
            missing.append("z step")
        if missing:
            raise StackFormatError(
                f"{path} does not record its {' or '.join(missing)}, so voxel_um is "
                f"required. {_VOXEL_HINT}"
            )

    c_source = c_index if n_c > 1 else None
    clean, objects = ground_truth(path, n_t, data.shape[2:])
    stacks = []
    for t in range(n_t):
        z_um = _plane_positions(meta, override, dz, n_z, t, c_index, path)
        planes = data[t, c_index]
        flipped = bool(z_um[-1] < z_um[0])
        if flipped:
            # recorded top-down: store bottom-up, so that z_um always increases
            z_um, planes = z_um[::-1], planes[::-1]
        tags = []
        if c_source is not None:
            tags.append(f"c={c_source}")
        if n_t > 1:
            tags.append(f"t={t}")
        stacks.append(
            ZStack(
                data=planes,
                z_um=z_um,
                pixel_um=(py, px),
                source=str(path) + (f"[{','.join(tags)}]" if tags else ""),
                wavelength_um=_per_channel(meta.wavelength_um, c_index),
                na=meta.na,
                camera_offset=_per_channel(meta.camera_offset, c_index),
                clean=None if clean is None else clean[::-1] if flipped else clean,
                objects=objects,
            )
        )
    return stacks


def _check_voxel_override(
    voxel_um: Sequence[float] | None, path: Path
) -> tuple[float, float, float] | None:
    if voxel_um is None:
        return None
    try:
        values = tuple(float(v) for v in voxel_um)
    except (TypeError, ValueError) as exc:
        raise StackFormatError(
            f"voxel_um for {path} must be three numbers (z, y, x) in µm, got "
            f"{voxel_um!r}"
        ) from exc
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise StackFormatError(
            f"voxel_um for {path} must be three positive numbers (z, y, x) in µm, "
            f"got {voxel_um!r}"
        )
    return values[0], values[1], values[2]


def _to_tczyx(
    data: np.ndarray, axes: str, kind: str, path: Path
) -> tuple[np.ndarray, str]:
    """Reorder to ``(T, C, Z, Y, X)``, dropping singleton axes of other kinds."""
    shape = dict(zip(axes, data.shape, strict=True))
    if "Y" not in shape or "X" not in shape:
        raise StackFormatError(f"{path}: no image plane in axes {axes!r}.")
    # Singleton axes (samples per pixel, unused OME dimensions) carry nothing.
    keep = [a for a in axes if shape[a] > 1 or a in "ZYX"]
    data = data.reshape([shape[a] for a in keep])
    axes = "".join(keep)
    if kind == "plain" or "Z" not in axes:
        # No axis semantics (plain multi-page TIFF, or an ImageJ/OME stack whose
        # planes are only counted as "images"): a single leading axis is z.
        extra = [a for a in axes if a not in "TCZYX"]
        if len(extra) == 1 and axes.index(extra[0]) < axes.index("Y"):
            axes = axes.replace(extra[0], "Z")
    unknown = [a for a in axes if a not in "TCZYX"]
    if unknown:
        raise StackFormatError(
            f"{path}: unknown axes {axes!r} with shape {data.shape}; expected ZYX, "
            "TZYX, ZCYX or CZYX (single-channel grey values, not RGB). In Fiji: "
            "Image > Type > 16-bit, Image > Hyperstacks > Re-order Hyperstack."
        )
    if "Z" not in axes:
        if "T" in axes:
            raise StackFormatError(
                f"{path} has a time axis ({shape['T']} frames) but no z axis: a "
                "time-lapse, not a z-stack. If those frames are z planes, relabel "
                "them (Fiji: Image > Properties, swap frames and slices)."
            )
        raise StackFormatError(
            f"{path} holds a single 2-D image ({shape['Y']}×{shape['X']}), not a "
            "z-stack. Record one with `deepz zstack`, or save all planes in one "
            "multi-page TIFF."
        )
    for a in "TC":
        if a not in axes:
            data = data[np.newaxis]
            axes = a + axes
    perm = [axes.index(a) for a in "TCZYX"]
    return np.transpose(data, perm), "TCZYX"


def _pick_channel(
    n_c: int, channel: int | None, names: list[str] | None, path: Path
) -> int:
    listing = ", ".join(
        f"{i}" + (f" ({names[i]})" if names and i < len(names) and names[i] else "")
        for i in range(n_c)
    )
    if channel is None:
        if n_c > 1:
            raise StackFormatError(
                f"{path} has {n_c} channels: {listing}. Choose one: channel=N "
                "(--channel N on the command line)."
            )
        return 0
    if not 0 <= channel < n_c:
        raise StackFormatError(
            f"channel {channel} is out of range for {path}, which has {n_c} "
            f"channel{'s' if n_c > 1 else ''}: {listing}."
        )
    return channel


def _plane_positions(
    meta: FileMetadata,
    override: tuple[float, float, float] | None,
    dz: float | None,
    n_z: int,
    t: int,
    c: int,
    path: Path,
) -> np.ndarray:
    """Strictly monotonic plane positions (µm) of one time point and channel."""
    if override is None and meta.plane_z_um:
        z = meta.plane_z_um.get((t, c)) or meta.plane_z_um.get((t, 0))
        if z is not None and len(z) == n_z and all(math.isfinite(v) for v in z):
            steps = np.diff(z)
            # Some writers fill PositionZ with one constant (a stage that was not
            # read): such positions say nothing, fall back to the z step.
            if np.all(steps > 0) or np.all(steps < 0):
                return np.asarray(z, dtype=np.float64)
    if dz is None:
        raise StackFormatError(
            f"{path} records neither a distinct z position for every plane nor a "
            f"z step, so voxel_um is required. {_VOXEL_HINT}"
        )
    return np.arange(n_z, dtype=np.float64) * dz


def _per_channel(values: list[float | None] | None, c: int) -> float | None:
    if not values:
        return None
    return values[c] if c < len(values) else values[0]
