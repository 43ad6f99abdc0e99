"""The OME-XML header of the project's OME-TIFF files, and the lookup that reads it.

`frames_ome_xml` describes a file of raw frames (`OmeTiffWriter`) and
`volumes_ome_xml` a file of refocused volumes (`OmeTiffVolumeWriter`); both build an
OME 2016-06 document through one builder:

* ``Pixels``: axes, sizes, type and ``PhysicalSizeX/Y/Z`` in µm where known;
* ``Plane`` entries: ``DeltaT`` (s), ``PositionZ`` (µm) and, for frames,
  ``ExposureTime`` (ms), where every frame (or volume) has the value;
* ``StructuredAnnotations``: a ``MapAnnotation`` with the run settings as key/value
  text for viewers such as OMERO, and two ``CommentAnnotation``\\ s holding exact
  JSON, the run metadata and the list of per-frame (per-volume) metadata dicts.

The namespaces below name those annotations; `comment_annotation` finds one again.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
import tifffile

from deepz_live.acquisition._output import jsonable

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from numpy.typing import DTypeLike

__all__ = [
    "FRAMES_JSON_NAMESPACE",
    "RUN_JSON_NAMESPACE",
    "RUN_NAMESPACE",
    "VOLUMES_JSON_NAMESPACE",
    "VOLUMES_NAMESPACE",
    "VOLUMES_RUN_JSON_NAMESPACE",
    "comment_annotation",
    "frames_ome_xml",
    "volumes_ome_xml",
]

RUN_NAMESPACE = "deepz-live/run"
RUN_JSON_NAMESPACE = "deepz-live/run.json"
FRAMES_JSON_NAMESPACE = "deepz-live/frames.json"
VOLUMES_NAMESPACE = "deepz-live/volumes"
VOLUMES_RUN_JSON_NAMESPACE = "deepz-live/volumes-run.json"
VOLUMES_JSON_NAMESPACE = "deepz-live/volumes.json"
_OME_NS = {"ome": "http://www.openmicroscopy.org/Schemas/OME/2016-06"}

# frame-metadata key -> (OME Plane attribute, unit)
_PLANE_FIELDS = {
    "time_s": ("DeltaT", "s"),
    "z_um": ("PositionZ", "µm"),
    "exposure_ms": ("ExposureTime", "ms"),
}


def frames_ome_xml(
    path: Path,
    *,
    axes: str,
    dtype: DTypeLike,
    frame_shape: tuple[int, int],
    pixel_size_um: float | None,
    z_step_um: float | None,
    run_metadata: dict[str, Any],
    frame_metadata: list[dict[str, Any]],
) -> bytes:
    """The OME-XML of a file of raw frames, one page per frame.

    Parameters
    ----------
    path : Path
        The file (its name up to the first dot names the image).
    axes : {"TYX", "ZYX"}
        A time-lapse or a z-stack; ``PhysicalSizeZ`` is given for z-stacks only.
    dtype : DTypeLike
        Pixel type of the frames.
    frame_shape : tuple of int
        ``(height, width)`` of every frame.
    pixel_size_um, z_step_um : float or None
        Physical sizes in µm; None when unknown.
    run_metadata : dict
        The run settings (MapAnnotation ``deepz-live/run``, JSON in
        ``deepz-live/run.json``).
    frame_metadata : list of dict
        One JSON-ready dict per frame (JSON in ``deepz-live/frames.json``); its
        ``time_s``, ``z_um`` and ``exposure_ms`` fill the ``Plane`` entries.

    Returns
    -------
    bytes
        ASCII OME-XML with an XML declaration.
    """
    n = len(frame_metadata)
    plane: dict[str, list[Any]] = {}
    for key, (attribute, unit) in _PLANE_FIELDS.items():
        values = [m.get(key) for m in frame_metadata]
        if all(_is_number(v) for v in values):
            plane[attribute] = [float(v) for v in values if _is_number(v)]
            plane[f"{attribute}Unit"] = [unit] * n
    return _ome_xml(
        path,
        axes=axes,
        dtype=dtype,
        shape=(n, *frame_shape),
        pixel_size_um=pixel_size_um,
        z_step_um=z_step_um if axes == "ZYX" else None,
        plane=plane,
        description=(
            "Raw camera frames written by deepz-live. Run settings: "
            f"MapAnnotation {RUN_NAMESPACE!r}; exact JSON: CommentAnnotations "
            f"{RUN_JSON_NAMESPACE!r} and {FRAMES_JSON_NAMESPACE!r}."
        ),
        namespaces=(RUN_NAMESPACE, RUN_JSON_NAMESPACE, FRAMES_JSON_NAMESPACE),
        run_metadata=run_metadata,
        items=frame_metadata,
    )


def volumes_ome_xml(
    path: Path,
    *,
    planes_um: Sequence[float],
    frame_shape: tuple[int, int],
    pixel_size_um: float | None,
    z_step_um: float | None,
    run_metadata: dict[str, Any],
    volume_metadata: list[dict[str, Any]],
) -> bytes:
    """The OME-XML of a file of refocused volumes (``TZYX``, float32).

    Parameters
    ----------
    path : Path
        The file (its name up to the first dot names the image).
    planes_um : sequence of float
        The refocusing distances of the planes, µm from the frame's focus.
    frame_shape : tuple of int
        ``(height, width)`` of every plane.
    pixel_size_um, z_step_um : float or None
        Physical sizes in µm; None when unknown (or the planes are unevenly spaced).
    run_metadata : dict
        Model identity and settings (MapAnnotation ``deepz-live/volumes``, JSON in
        ``deepz-live/volumes-run.json``).
    volume_metadata : list of dict
        One JSON-ready dict per volume (JSON in ``deepz-live/volumes.json``); its
        ``time_s`` gives every plane's ``DeltaT``, its ``z_um`` (the frame's focus)
        plus the plane offset every plane's ``PositionZ``.

    Returns
    -------
    bytes
        ASCII OME-XML with an XML declaration.
    """
    n_t, n_z = len(volume_metadata), len(planes_um)
    plane: dict[str, list[Any]] = {}
    times = [m.get("time_s") for m in volume_metadata]
    if all(_is_number(t) for t in times):
        plane["DeltaT"] = [float(t) for t in times if _is_number(t) for _ in range(n_z)]
        plane["DeltaTUnit"] = ["s"] * (n_t * n_z)
    focus = [m.get("z_um") for m in volume_metadata]
    if all(_is_number(z) for z in focus):
        plane["PositionZ"] = [
            float(z) + dz for z in focus if _is_number(z) for dz in planes_um
        ]
        plane["PositionZUnit"] = ["µm"] * (n_t * n_z)
    return _ome_xml(
        path,
        axes="TZYX",
        dtype=np.float32,
        shape=(n_t, n_z, *frame_shape),
        pixel_size_um=pixel_size_um,
        z_step_um=z_step_um,
        plane=plane,
        description=(
            "Volumes refocused by deepz-live, one per frame (TZYX; planes at "
            f"{list(planes_um)} µm from the frame's focus). Model and run: "
            f"MapAnnotation {VOLUMES_NAMESPACE!r}; exact JSON: CommentAnnotations "
            f"{VOLUMES_RUN_JSON_NAMESPACE!r} and {VOLUMES_JSON_NAMESPACE!r}."
        ),
        namespaces=(
            VOLUMES_NAMESPACE,
            VOLUMES_RUN_JSON_NAMESPACE,
            VOLUMES_JSON_NAMESPACE,
        ),
        run_metadata=run_metadata,
        items=volume_metadata,
    )


def comment_annotation(ome_xml: str | None, namespace: str) -> str | None:
    """The text of the ``CommentAnnotation`` in ``namespace``; None if there is none.

    Parameters
    ----------
    ome_xml : str or None
        An OME-XML document (``TiffFile.ome_metadata``); None for a file without.
    namespace : str
        One of the namespaces of this module.
    """
    if not ome_xml:
        return None
    root = ET.fromstring(ome_xml)
    for element in root.iterfind(".//ome:CommentAnnotation", _OME_NS):
        if element.get("Namespace") == namespace:
            value = element.find("ome:Value", _OME_NS)
            return value.text if value is not None else None
    return None


def _ome_xml(
    path: Path,
    *,
    axes: str,
    dtype: DTypeLike,
    shape: tuple[int, ...],
    pixel_size_um: float | None,
    z_step_um: float | None,
    plane: dict[str, list[Any]],
    description: str,
    namespaces: tuple[str, str, str],
    run_metadata: dict[str, Any],
    items: list[dict[str, Any]],
) -> bytes:
    """One image, one page per 2-D plane.

    ``namespaces`` are those of the MapAnnotation, the run JSON and the items JSON.
    """
    height, width = shape[-2:]
    pixels: dict[str, Any] = {}
    if pixel_size_um is not None:
        pixels["PhysicalSizeX"] = pixels["PhysicalSizeY"] = pixel_size_um
    if z_step_um is not None:
        pixels["PhysicalSizeZ"] = z_step_um
    map_namespace, run_namespace, items_namespace = namespaces
    omexml = tifffile.OmeXml(Creator="deepz-live")
    omexml.addimage(
        dtype=dtype,
        shape=shape,
        storedshape=(math.prod(shape[:-2]), 1, 1, height, width, 1),
        axes=axes,
        Name=path.name.split(".")[0],
        Description=description,
        **pixels,
        **({"Plane": plane} if plane else {}),
        MapAnnotation={
            "Namespace": map_namespace,
            "Value": {k: _as_text(v) for k, v in run_metadata.items()},
        },
        CommentAnnotation=[
            {"Namespace": run_namespace, "Value": json.dumps(jsonable(run_metadata))},
            {"Namespace": items_namespace, "Value": json.dumps(items)},
        ],
    )
    # ASCII with character references keeps µ & co. intact for every TIFF reader
    return omexml.tostring(declaration=True).encode("ascii", "xmlcharrefreplace")


def _is_number(value: Any) -> TypeGuard[float]:
    return (
        isinstance(value, (int, float, np.number))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _as_text(value: Any) -> str:
    value = jsonable(value)
    return value if isinstance(value, str) else json.dumps(value)
