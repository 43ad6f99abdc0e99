"""Reading back the metadata the writers stored: the one reader of the project's files.

`read_run_metadata` and `read_frame_metadata` read files of raw frames
(`OmeTiffWriter`, `OmeZarrWriter`), `read_volume_metadata` files of refocused volumes
(`OmeTiffVolumeWriter`, `OmeZarrVolumeWriter`). From a closed OME-TIFF they read the
exact JSON in the OME-XML ``CommentAnnotation``\\ s (`_omexml`); from a TIFF that was
never closed they recover per-frame (per-volume) metadata from the JSON
ImageDescription of each page; from OME-Zarr they read the group attribute
``deepz-live`` (`_zarr`). The pixels themselves are plain OME-TIFF / OME-Zarr: read
them with any reader (``tifffile.imread``, ``zarr``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import tifffile

from deepz_live.acquisition import _zarr
from deepz_live.acquisition._frames import FRAME_KEY
from deepz_live.acquisition._omexml import (
    FRAMES_JSON_NAMESPACE,
    RUN_JSON_NAMESPACE,
    VOLUMES_JSON_NAMESPACE,
    VOLUMES_RUN_JSON_NAMESPACE,
    comment_annotation,
)
from deepz_live.acquisition._volumes import VOLUME_KEY

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["read_frame_metadata", "read_run_metadata", "read_volume_metadata"]


def read_run_metadata(path: str | Path) -> dict[str, Any]:
    """Read the run metadata stored by `OmeTiffWriter` or `OmeZarrWriter`.

    Parameters
    ----------
    path : str or Path
        A file written by `OmeTiffWriter`.

    Returns
    -------
    dict
        The ``run_metadata`` given to the writer; empty if the file was never closed.
    """
    if _zarr.is_zarr(path):
        return dict(_zarr.read_attribute(path).get("run", {}))
    with tifffile.TiffFile(path) as tif:
        ome = tif.ome_metadata
    value = comment_annotation(ome, RUN_JSON_NAMESPACE)
    return json.loads(value) if value is not None else {}


def read_frame_metadata(path: str | Path) -> list[dict[str, Any]]:
    """Read the per-frame metadata stored by a writer, one dict per frame.

    Works for files that were never closed too (from the per-page JSON).

    Parameters
    ----------
    path : str or Path
        A file written by `OmeTiffWriter`.

    Returns
    -------
    list of dict
        The ``frame_metadata`` given to each `OmeTiffWriter.append` call, in order.
    """
    if _zarr.is_zarr(path):
        return list(_zarr.read_attribute(path).get("frames", []))
    with tifffile.TiffFile(path) as tif:
        value = comment_annotation(tif.ome_metadata, FRAMES_JSON_NAMESPACE)
        if value is not None:
            return list(json.loads(value))
        frames = []
        for meta in _page_descriptions(tif):
            meta.pop(FRAME_KEY, None)
            frames.append(meta)
        return frames


def read_volume_metadata(path: str | Path) -> dict[str, Any]:
    """Read what a volume writer stored: the run metadata and one dict per volume.

    Works for OME-TIFF files that were never closed too (from the per-page JSON;
    the run metadata is then empty).

    Parameters
    ----------
    path : str or Path
        A file written by `OmeTiffVolumeWriter` or `OmeZarrVolumeWriter`.

    Returns
    -------
    dict
        ``{"run": {...}, "volumes": [{...}, ...]}``; ``run`` holds ``planes_um``
        and whatever the writer was given (model identity, settings).
    """
    if _zarr.is_zarr(path):
        attribute = _zarr.read_attribute(path)
        return {
            "run": dict(attribute.get("run", {})),
            "volumes": list(attribute.get("volumes", [])),
        }
    with tifffile.TiffFile(path) as tif:
        ome = tif.ome_metadata
        run = comment_annotation(ome, VOLUMES_RUN_JSON_NAMESPACE)
        volumes = comment_annotation(ome, VOLUMES_JSON_NAMESPACE)
        if run is not None and volumes is not None:
            return {"run": json.loads(run), "volumes": list(json.loads(volumes))}
        found = []
        for meta in _page_descriptions(tif):
            if meta.pop("plane", None) == 0:
                meta.pop(VOLUME_KEY, None)
                found.append(meta)
        return {"run": {}, "volumes": found}


def _page_descriptions(tif: tifffile.TiffFile) -> Iterator[dict[str, Any]]:
    """The JSON ImageDescription of every page, as the writers appended them."""
    for index in range(len(tif.pages)):
        page = tif.pages[index]
        page = page.aspage() if isinstance(page, tifffile.TiffFrame) else page
        yield json.loads(page.description or "{}")
