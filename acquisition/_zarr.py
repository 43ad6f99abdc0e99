"""OME-Zarr plumbing of the Zarr writers: streams, the metadata attribute, the layout.

The Zarr writers (`OmeZarrWriter`, `OmeZarrVolumeWriter`) write OME-Zarr (NGFF 0.5)
through ome-writers and zarr-python, the ``zarr`` extra; both are imported only here
and only when a Zarr output is opened or read. `create_stream` opens a growing array
(a missing extra becomes an `OutputLocationError` with the install hint), the run
and per-frame (per-volume) metadata go into the group attribute ``deepz-live``
(`write_attribute`, `read_attribute`), and `is_zarr` tells Zarr paths (``*.zarr``)
from OME-TIFF ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepz_live.acquisition._errors import OutputLocationError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "ZARR_ATTRIBUTE",
    "ZARR_SUFFIX",
    "create_stream",
    "is_zarr",
    "plane_dimensions",
    "read_attribute",
    "read_frame",
    "write_attribute",
]

ZARR_ATTRIBUTE = "deepz-live"
ZARR_SUFFIX = ".zarr"


def is_zarr(path: str | Path) -> bool:
    """Whether ``path`` names an OME-Zarr store (``*.zarr``) rather than a TIFF."""
    return Path(path).suffix == ZARR_SUFFIX


def plane_dimensions(
    frame_shape: tuple[int, int], pixel_size_um: float | None
) -> list[dict[str, Any]]:
    """The ``y`` and ``x`` dimensions of a store with one chunk per 2-D plane.

    Scaled in µm when ``pixel_size_um`` is known; in the form `create_stream` takes.
    """
    height, width = frame_shape
    plane_scale = (
        {"unit": "micrometer", "scale": pixel_size_um}
        if pixel_size_um is not None
        else {}
    )
    return [
        {
            "name": "y",
            "count": height,
            "type": "space",
            "chunk_size": height,
            **plane_scale,
        },
        {
            "name": "x",
            "count": width,
            "type": "space",
            "chunk_size": width,
            **plane_scale,
        },
    ]


def create_stream(
    path: Path,
    dimensions: Sequence[dict[str, Any]],
    dtype: str,
    *,
    overwrite: bool,
) -> Any:
    """Open an ome-writers stream that writes an OME-Zarr store at ``path``.

    Parameters
    ----------
    path : Path
        The store.
    dimensions : sequence of dict
        Keyword arguments of one ``ome_writers.Dimension`` each, slowest first.
    dtype : str
        The array's dtype name.
    overwrite : bool
        Replace an existing store.

    Raises
    ------
    OutputLocationError
        The ``zarr`` extra is not installed.
    """
    try:
        import ome_writers
        import zarr  # noqa: F401  (the backend ome-writers uses here)
    except ImportError as exc:
        raise OutputLocationError(
            f"Writing OME-Zarr ({path.name}) needs the zarr extra: "
            'pip install "deepz-live[zarr]", or write OME-TIFF (*.ome.tif).'
        ) from exc
    settings = ome_writers.AcquisitionSettings(
        root_path=str(path),
        dimensions=tuple(ome_writers.Dimension(**d) for d in dimensions),
        dtype=dtype,
        format=ome_writers.OmeZarrFormat(backend="zarr-python"),
        overwrite=overwrite,
    )
    return ome_writers.create_stream(settings)


def read_frame(path: Path, index: int) -> np.ndarray:
    """Read entry ``index`` of the store's full-resolution array (``0``)."""
    import zarr

    return np.asarray(zarr.open_array(str(path / "0"), mode="r")[index])


def write_attribute(path: Path, value: dict[str, Any]) -> None:
    """Store ``value`` (JSON-ready) as the group attribute ``deepz-live``."""
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    group.attrs[ZARR_ATTRIBUTE] = value


def read_attribute(path: str | Path) -> dict[str, Any]:
    """The group attribute ``deepz-live``; empty if the store has none (not closed)."""
    import zarr

    group = zarr.open_group(str(path), mode="r")
    value = group.attrs.get(ZARR_ATTRIBUTE, {})
    return dict(value) if isinstance(value, dict) else {}
