"""Reading back the metadata the writers stored, with one error for an unreadable file.

`read_run_metadata` and `read_frame_metadata` read files of raw frames
(`OmeTiffWriter`, `OmeZarrWriter`), `read_volume_metadata` files of refocused volumes
(`OmeTiffVolumeWriter`, `OmeZarrVolumeWriter`). From a closed OME-TIFF they read the
exact JSON in the OME-XML ``CommentAnnotation``\\ s; from a TIFF that was never
closed they recover per-frame (per-volume) metadata from the JSON ImageDescription of
each page, and the run metadata of raw frames from page 0's (written with the first
frame). Both TIFF layouts are deepz-live's file format, which
`deepz_live._metadata_format` describes and decodes (the z-stack reader of
`deepz_live.inference` reads it there too). From OME-Zarr they read the group
attribute ``deepz-live`` (`_zarr`). The pixels themselves are plain OME-TIFF /
OME-Zarr: read them with any reader (``tifffile.imread``, ``zarr``).

A file that cannot be read (missing, not a TIFF, truncated before its metadata,
metadata that is not the writers') raises `UnreadableFileError`, whatever the
underlying library raised: callers catch one error.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import tifffile

from deepz_live._metadata_format import (
    FRAMES_JSON_NAMESPACE,
    RUN_JSON_NAMESPACE,
    VOLUMES_JSON_NAMESPACE,
    VOLUMES_RUN_JSON_NAMESPACE,
    annotated_list,
    annotated_object,
    page_frame_metadata,
    page_run_metadata,
    page_volume_metadata,
)
from deepz_live.acquisition import _zarr
from deepz_live.acquisition._errors import DeepzError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = [
    "UnreadableFileError",
    "read_frame_metadata",
    "read_run_metadata",
    "read_volume_metadata",
]


class UnreadableFileError(DeepzError):
    """A file's metadata cannot be read: missing, damaged, or not the writers' own."""


@contextmanager
def _reading(path: str | Path) -> Iterator[None]:
    """Turn whatever reading ``path`` raises into `UnreadableFileError`."""
    try:
        yield
    except UnreadableFileError:
        raise
    except Exception as exc:
        text = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
        raise UnreadableFileError(
            f"Cannot read the metadata of {path} ({reason}); is it a complete file "
            "written by deepz-live?"
        ) from exc


def _json_list(text: str, what: str) -> list[Any]:
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError(f"{what} is not a JSON list of objects")
    return value


def read_run_metadata(path: str | Path) -> dict[str, Any]:
    """Read the run metadata stored by `OmeTiffWriter` or `OmeZarrWriter`.

    Parameters
    ----------
    path : str or Path
        A file written by `OmeTiffWriter` or `OmeZarrWriter`.

    Returns
    -------
    dict
        The ``run_metadata`` given to the writer. From an OME-TIFF that was never
        closed (a killed process), the run metadata as it was at the first frame,
        without ``result``; empty for an OME-Zarr store never closed, and for
        another program's TIFF.

    Raises
    ------
    UnreadableFileError
        The file is missing, not a TIFF or OME-Zarr, or damaged.
    """
    with _reading(path):
        if _zarr.is_zarr(path):
            return _mapping(_zarr.read_attribute(path).get("run", {}), "run")
        with tifffile.TiffFile(path) as tif:
            ome = tif.ome_metadata
            run = annotated_object(ome, RUN_JSON_NAMESPACE)
            if run is not None:
                return run
            if ome is not None:
                return {}  # another writer's OME-TIFF
            return page_run_metadata(tif)


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a JSON object")
    return dict(value)


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

    Raises
    ------
    UnreadableFileError
        The file is missing, damaged, or its pages do not hold the writers' JSON.
    """
    with _reading(path):
        if _zarr.is_zarr(path):
            frames = _zarr.read_attribute(path).get("frames", [])
            return _json_list(json.dumps(frames), "the frame metadata")
        with tifffile.TiffFile(path) as tif:
            frames = annotated_list(tif.ome_metadata, FRAMES_JSON_NAMESPACE)
            if frames is not None:
                return frames
            return page_frame_metadata(tif)


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

    Raises
    ------
    UnreadableFileError
        The file is missing, damaged, or its pages do not hold the writers' JSON.
    """
    with _reading(path):
        if _zarr.is_zarr(path):
            attribute = _zarr.read_attribute(path)
            return {
                "run": _mapping(attribute.get("run", {}), "the run metadata"),
                "volumes": _json_list(
                    json.dumps(attribute.get("volumes", [])), "the volume metadata"
                ),
            }
        with tifffile.TiffFile(path) as tif:
            ome = tif.ome_metadata
            run = annotated_object(ome, VOLUMES_RUN_JSON_NAMESPACE)
            volumes = annotated_list(ome, VOLUMES_JSON_NAMESPACE)
            if run is not None and volumes is not None:
                return {"run": run, "volumes": volumes}
            return {"run": {}, "volumes": page_volume_metadata(tif)}
