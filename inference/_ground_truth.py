"""The simulator's ground truth beside a recorded z-stack, if it saved one.

``deepz zstack --ground-truth`` writes ``<stem>.clean.ome.tif`` (the planes without
noise) and ``<stem>.objects.csv`` (each object's in-focus z and pixel position) next
to ``<stem>.ome.tif``. `read_stacks` attaches them to the stack (`ZStack.clean`,
`ZStack.objects`): clean training targets, clean scores and axial localization.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile

from deepz_live.inference._errors import StackFormatError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["ground_truth"]


def ground_truth(
    path: Path, n_t: int, shape: tuple[int, ...]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The noise-free twin and the objects table beside the stack file ``path``.

    Only single-time-point stacks have them (``n_t == 1``); a twin whose shape is
    not ``shape`` (``(Z, Y, X)``) is ignored: it belongs to another recording.

    Raises
    ------
    StackFormatError
        A twin or objects table that exists but cannot be read.
    """
    name = path.name
    stem = next(
        (
            name[: -len(suffix)]
            for suffix in (".ome.tif", ".ome.tiff", ".tif", ".tiff")
            if name.lower().endswith(suffix)
        ),
        path.stem,
    )
    if n_t != 1 or stem.endswith(".clean"):
        return None, None
    clean_path = path.with_name(f"{stem}.clean.ome.tif")
    objects_path = path.with_name(f"{stem}.objects.csv")
    clean = objects = None
    if clean_path.is_file():
        try:
            twin = tifffile.imread(clean_path)
        except (tifffile.TiffFileError, ValueError, OSError) as exc:
            raise StackFormatError(
                f"{clean_path}: the noise-free twin of {path.name} cannot be read "
                f"({exc}); delete it or record the stack again with --ground-truth."
            ) from exc
        if twin.shape == tuple(shape):
            clean = twin
    if objects_path.is_file():
        try:
            table: Any = np.genfromtxt(  # structured: columns by name
                objects_path, delimiter=",", names=True, dtype=np.float64
            )
            columns = table.dtype.names or ()
            if {"focus_z_um", "y_px", "x_px"} <= set(columns):
                objects = np.column_stack(
                    [
                        np.atleast_1d(table["focus_z_um"]),
                        np.atleast_1d(table["y_px"]),
                        np.atleast_1d(table["x_px"]),
                    ]
                )
        except (ValueError, OSError) as exc:
            raise StackFormatError(
                f"{objects_path}: the objects table of {path.name} cannot be read "
                f"({exc}); delete it or record the stack again with --ground-truth."
            ) from exc
    return clean, objects
