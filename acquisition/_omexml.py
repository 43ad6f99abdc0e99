"""The OME-XML header of the project's OME-TIFF files, and the lookup that reads it.

`frames_ome_xml` describes a file of raw frames (`OmeTiffWriter`) and
`volumes_ome_xml` a file of refocused volumes (`OmeTiffVolumeWriter`); both build one
OME 2016-06 document (one ``Image``, one page per 2-D plane) through one builder.

What goes where
---------------
* ``Image``: ``AcquisitionDate`` (the run's ``started``, when recorded) and, when
  the run metadata records the devices, ``InstrumentRef`` and ``ObjectiveSettings``
  (immersion medium and its refractive index).
* ``Instrument``: ``Detector`` (the run's camera) and ``Objective`` (``LensNA``,
  ``NominalMagnification``, ``Immersion``) from the device properties recorded in
  the run metadata (``run_metadata["devices"]``: the ``Optics`` device of the
  simulator, the camera named by ``run_metadata["camera"]``). An element or
  attribute whose value was not recorded is left out: nothing is guessed.
* ``Pixels``: axes, sizes, type and ``PhysicalSizeX/Y/Z`` in µm where known; one
  ``Channel`` with ``EmissionWavelength`` (nm), ``Fluor`` and ``DetectorSettings``
  (``Offset``, ``Gain``, ``Binning``) where known.
* ``Plane`` entries: ``DeltaT`` (s since the first frame, or the first volume's
  frame: 0 there), ``PositionZ`` (µm) and, for frames, ``ExposureTime`` (ms), where
  every frame (or volume) has the value.
* ``StructuredAnnotations``, all linked from the image: a ``MapAnnotation`` with the
  run settings as key/value text for viewers such as OMERO; a ``MapAnnotation``
  (``deepz-live/axes``) saying what the z and time values mean in this file; two
  ``CommentAnnotation``\\ s holding exact JSON, the run metadata and the list of
  per-frame (per-volume) metadata dicts (dose, model identity, planes: what OME has
  no field for).

The z axis is the focus drive's
-------------------------------
``PositionZ`` (OME: "the Z position of the stage") is the focus drive's position in
µm of travel, as Micro-Manager reports it; ``PhysicalSizeZ`` is a step of that
travel. Neither is depth in the sample: with an air objective focusing into water
the focal plane moves about 1.3 µm through the sample per µm of travel. The
immersion and sample refractive indices are recorded (``ObjectiveSettings`` and
the ``deepz-live/axes`` annotation) so that depth can be worked out; it is never
written as a z position. A refocused plane's offset (``planes_um``) is in the same
units: the plane a scan would record with the focus drive that much further.

The annotations' namespaces are deepz-live's file format, named (and read back) in
`deepz_live._metadata_format`.
"""

from __future__ import annotations

import json
import math
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

from deepz_live._metadata_format import (
    AXES_NAMESPACE,
    FRAMES_JSON_NAMESPACE,
    RUN_JSON_NAMESPACE,
    RUN_NAMESPACE,
    VOLUMES_JSON_NAMESPACE,
    VOLUMES_NAMESPACE,
    VOLUMES_RUN_JSON_NAMESPACE,
)
from deepz_live.acquisition._frame_processor import OPTICS_DEVICE
from deepz_live.acquisition._output import jsonable

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from numpy.typing import DTypeLike

__all__ = ["frames_ome_xml", "ome_pixel_type", "volumes_ome_xml"]

_OME_URI = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
_XSI_URI = "http://www.w3.org/2001/XMLSchema-instance"

_PIXEL_TYPES = {
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "float32": "float",
    "float64": "double",
}

# Immersion media named by their refractive index (OME's Objective Immersion and
# ObjectiveSettings Medium share these four names); other indices name no medium.
_MEDIA = (("Air", 1.0003), ("Water", 1.333), ("Glycerol", 1.473), ("Oil", 1.518))
_MEDIUM_TOLERANCE = 0.01

_Z_SENTENCE = (
    " Its z values are focus-drive travel in µm, not depth in the sample "
    f"(MapAnnotation {AXES_NAMESPACE!r})."
)


def ome_pixel_type(dtype: DTypeLike) -> str:
    """The OME ``PixelType`` of ``dtype``.

    Raises
    ------
    ValueError
        OME-TIFF has no pixel type for ``dtype`` (complex, bool, 64-bit integers).
    """
    name = np.dtype(dtype).name
    if name not in _PIXEL_TYPES:
        raise ValueError(
            f"OME-TIFF cannot store {name} pixels; use one of {sorted(_PIXEL_TYPES)}."
        )
    return _PIXEL_TYPES[name]


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
        ``deepz-live/run.json``); its ``started``, ``devices``, ``camera`` and
        ``focus_device`` fill the standard fields where present.
    frame_metadata : list of dict
        One JSON-ready dict per frame (JSON in ``deepz-live/frames.json``); its
        ``time_s``, ``z_um`` and ``exposure_ms`` fill the ``Plane`` entries.

    Returns
    -------
    bytes
        ASCII OME-XML with an XML declaration.
    """
    n = len(frame_metadata)
    times = _numbers(m.get("time_s") for m in frame_metadata)
    z_um = _numbers(m.get("z_um") for m in frame_metadata)
    exposures = _numbers(m.get("exposure_ms") for m in frame_metadata)
    planes = []
    for k in range(n):
        plane: dict[str, Any] = {"TheZ": 0, "TheT": 0}
        plane["TheZ" if axes == "ZYX" else "TheT"] = k
        if times is not None:
            plane.update(DeltaT=round(times[k] - times[0], 9), DeltaTUnit="s")
        if exposures is not None:
            plane.update(ExposureTime=exposures[k], ExposureTimeUnit="ms")
        if z_um is not None:
            plane.update(PositionZ=z_um[k], PositionZUnit="µm")
        planes.append(plane)
    z_step = z_step_um if axes == "ZYX" else None
    instrument = _Instrument.from_run(run_metadata)
    drive = _drive(run_metadata)
    axes_notes = _axes_notes(
        run_metadata,
        instrument,
        first_time=None if times is None else times[0],
        origin="frame 0",
        PositionZ=None
        if z_um is None
        else f"position of the {drive} in µm (its travel), not depth in the sample",
        PhysicalSizeZ=None
        if z_step is None
        else f"step of the {drive} in µm of travel",
    )
    return _ome_xml(
        path,
        pixel_type=ome_pixel_type(dtype),
        size_zt=(n, 1) if axes == "ZYX" else (1, n),
        frame_shape=frame_shape,
        pixel_size_um=pixel_size_um,
        z_step_um=z_step,
        planes=planes,
        instrument=instrument,
        acquisition_date=_iso_datetime(run_metadata.get("started")),
        description=(
            "Raw camera frames written by deepz-live. Run settings: "
            f"MapAnnotation {RUN_NAMESPACE!r}; exact JSON: CommentAnnotations "
            f"{RUN_JSON_NAMESPACE!r} and {FRAMES_JSON_NAMESPACE!r}."
            + (_Z_SENTENCE if z_um is not None or z_step is not None else "")
        ),
        annotations=[
            ("MapAnnotation", RUN_NAMESPACE, _text_map(run_metadata)),
            ("MapAnnotation", AXES_NAMESPACE, axes_notes),
            ("CommentAnnotation", RUN_JSON_NAMESPACE, _json(run_metadata)),
            ("CommentAnnotation", FRAMES_JSON_NAMESPACE, _json(frame_metadata)),
        ],
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
        The refocusing distances of the planes, µm of focus travel from the frame's
        focal plane.
    frame_shape : tuple of int
        ``(height, width)`` of every plane.
    pixel_size_um, z_step_um : float or None
        Physical sizes in µm; None when unknown (or the planes are unevenly spaced).
    run_metadata : dict
        Model identity and settings (MapAnnotation ``deepz-live/volumes``, JSON in
        ``deepz-live/volumes-run.json``). Its ``started``, ``devices`` and
        ``camera`` (as in the raw run's metadata) fill the standard fields where
        present.
    volume_metadata : list of dict
        One JSON-ready dict per volume (JSON in ``deepz-live/volumes.json``); its
        ``time_s`` gives every plane's ``DeltaT``, its ``z_um`` (the frame's focus)
        plus the plane offset every plane's ``PositionZ``.

    Returns
    -------
    bytes
        ASCII OME-XML with an XML declaration.
    """
    n_t = len(volume_metadata)
    times = _numbers(m.get("time_s") for m in volume_metadata)
    focus = _numbers(m.get("z_um") for m in volume_metadata)
    planes = []
    for t in range(n_t):
        for z, dz in enumerate(planes_um):
            plane: dict[str, Any] = {"TheZ": z, "TheT": t}
            if times is not None:
                plane.update(DeltaT=round(times[t] - times[0], 9), DeltaTUnit="s")
            if focus is not None:
                plane.update(PositionZ=focus[t] + float(dz), PositionZUnit="µm")
            planes.append(plane)
    instrument = _Instrument.from_run(run_metadata)
    plane_list = json.dumps([float(p) for p in planes_um])
    notes = _axes_notes(
        run_metadata,
        instrument,
        first_time=None if times is None else times[0],
        origin="the first volume's frame",
        TheZ=(
            "plane k is the frame refocused by planes_um[k] µm of focus travel from "
            "its focal plane: the image a scan would record with the focus drive "
            "that much further"
        ),
        planes_um=plane_list,
        PositionZ=None
        if focus is None
        else (
            "the frame's focus-drive position (z_um) + the plane's planes_um, in µm "
            "of focus travel; not depth in the sample"
        ),
        PhysicalSizeZ=None
        if z_step_um is None
        else "step between planes_um, µm of focus travel",
    )
    return _ome_xml(
        path,
        pixel_type="float",
        size_zt=(len(planes_um), n_t),
        frame_shape=frame_shape,
        pixel_size_um=pixel_size_um,
        z_step_um=z_step_um,
        planes=planes,
        instrument=instrument,
        acquisition_date=_iso_datetime(run_metadata.get("started")),
        description=(
            "Volumes refocused by deepz-live, one per frame (TZYX; planes at "
            f"{plane_list} µm of focus travel from the frame's focal plane). Model "
            f"and run: MapAnnotation {VOLUMES_NAMESPACE!r}; exact JSON: "
            f"CommentAnnotations {VOLUMES_RUN_JSON_NAMESPACE!r} and "
            f"{VOLUMES_JSON_NAMESPACE!r}." + _Z_SENTENCE
        ),
        annotations=[
            ("MapAnnotation", VOLUMES_NAMESPACE, _text_map(run_metadata)),
            ("MapAnnotation", AXES_NAMESPACE, notes),
            ("CommentAnnotation", VOLUMES_RUN_JSON_NAMESPACE, _json(run_metadata)),
            ("CommentAnnotation", VOLUMES_JSON_NAMESPACE, _json(volume_metadata)),
        ],
    )


# --- the instrument ----------------------------------------------------------------


@dataclass(frozen=True)
class _Instrument:
    """The OME Instrument values recorded in a run's metadata (None: not recorded)."""

    na: float | None = None
    magnification: float | None = None
    immersion_index: float | None = None
    sample_index: float | None = None
    emission_nm: float | None = None
    fluor: str | None = None
    offset: float | None = None
    gain: float | None = None
    binning: str | None = None

    @classmethod
    def from_run(cls, run_metadata: dict[str, Any]) -> _Instrument:
        """From ``devices`` (device -> property -> text) and ``camera`` (a label)."""
        devices = run_metadata.get("devices")
        devices = devices if isinstance(devices, dict) else {}
        optics = devices.get(OPTICS_DEVICE)
        optics = optics if isinstance(optics, dict) else {}
        label = run_metadata.get("camera")
        camera = devices.get(label) if isinstance(label, str) else None
        camera = camera if isinstance(camera, dict) else {}
        fluor = optics.get("Fluorophore")
        return cls(
            na=_positive(optics.get("NA")),
            magnification=_positive(optics.get("Magnification")),
            immersion_index=_positive(optics.get("ImmersionIndex")),
            sample_index=_positive(optics.get("SampleIndex")),
            emission_nm=_positive(optics.get("EmissionWavelength_nm")),
            fluor=fluor.strip() if isinstance(fluor, str) and fluor.strip() else None,
            offset=_finite(camera.get("Offset")),
            gain=_positive(camera.get("Gain")),
            binning=_binning(camera.get("Binning")),
        )

    @property
    def medium(self) -> str | None:
        """The immersion medium the immersion index names (Air, Water, ...)."""
        if self.immersion_index is None:
            return None
        for name, index in _MEDIA:
            if abs(self.immersion_index - index) <= _MEDIUM_TOLERANCE:
                return name
        return None

    @property
    def has_objective(self) -> bool:
        return any(
            v is not None for v in (self.na, self.magnification, self.immersion_index)
        )

    @property
    def has_detector(self) -> bool:
        return any(v is not None for v in (self.offset, self.gain, self.binning))


def _binning(value: Any) -> str | None:
    """OME ``Binning`` of a Micro-Manager binning value (``"2"`` or ``"2x2"``)."""
    x, _, y = str(value).strip().lower().partition("x")
    y = y or x
    if not (x.isdigit() and y.isdigit()):
        return None
    return f"{x}x{y}" if x == y and x in ("1", "2", "4", "8") else "Other"


def _axes_notes(
    run_metadata: dict[str, Any],
    instrument: _Instrument,
    *,
    first_time: float | None,
    origin: str,
    **meanings: str | None,
) -> dict[str, str]:
    """The ``deepz-live/axes`` entries: what time and z mean in this file.

    ``meanings`` (``PositionZ=...``) are given in order, each where not None.
    """
    notes = {key: text for key, text in meanings.items() if text is not None}
    if first_time is not None:
        started = _iso_datetime(run_metadata.get("started"))
        notes["DeltaT"] = (
            f"s since {origin} (time_s = {first_time!r} s in the per-frame JSON)"
            + (f"; the run started at {started} (AcquisitionDate)" if started else "")
        )
    if instrument.immersion_index is not None:
        notes["ImmersionRefractiveIndex"] = repr(instrument.immersion_index)
    if instrument.sample_index is not None:
        notes["SampleRefractiveIndex"] = repr(instrument.sample_index)
    return notes


def _drive(run_metadata: dict[str, Any]) -> str:
    device = run_metadata.get("focus_device")
    return (
        f"focus drive {device!r}"
        if isinstance(device, str) and device
        else "focus drive"
    )


# --- the document ------------------------------------------------------------------


def _ome_xml(
    path: Path,
    *,
    pixel_type: str,
    size_zt: tuple[int, int],
    frame_shape: tuple[int, int],
    pixel_size_um: float | None,
    z_step_um: float | None,
    planes: list[dict[str, Any]],
    instrument: _Instrument,
    acquisition_date: str | None,
    description: str,
    annotations: list[tuple[str, str, Any]],
) -> bytes:
    """One image of ``size_zt`` planes, one TIFF page per plane (Z fastest).

    ``annotations`` are ``(element, namespace, value)``: a dict of text for a
    ``MapAnnotation``, text for a ``CommentAnnotation``; all are linked from the
    image.
    """
    root = ET.Element(
        "OME",
        {
            # the default namespace as a plain attribute: ElementTree's
            # default_namespace option refuses unqualified attributes
            "xmlns": _OME_URI,
            f"{{{_XSI_URI}}}schemaLocation": f"{_OME_URI} {_OME_URI}/ome.xsd",
            "UUID": f"urn:uuid:{uuid.uuid4()}",
            "Creator": "deepz-live",
        },
    )
    objective_id = detector_id = None
    if instrument.has_objective or instrument.has_detector:
        element = _sub(root, "Instrument", ID="Instrument:0")
        if instrument.has_detector:  # the schema puts detectors before objectives
            detector_id = "Detector:0:0"
            _sub(element, "Detector", ID=detector_id)
        if instrument.has_objective:
            objective_id = "Objective:0:0"
            _sub(
                element,
                "Objective",
                ID=objective_id,
                Immersion=instrument.medium,
                LensNA=instrument.na,
                NominalMagnification=instrument.magnification,
            )

    image = _sub(root, "Image", ID="Image:0", Name=path.name.split(".")[0])
    if acquisition_date is not None:
        _sub(image, "AcquisitionDate").text = acquisition_date
    _sub(image, "Description").text = description
    if objective_id is not None or detector_id is not None:
        _sub(image, "InstrumentRef", ID="Instrument:0")
    if objective_id is not None:
        _sub(
            image,
            "ObjectiveSettings",
            ID=objective_id,
            Medium=instrument.medium,
            RefractiveIndex=instrument.immersion_index,
        )
    height, width = frame_shape
    size_z, size_t = size_zt
    physical: dict[str, Any] = {}
    if pixel_size_um is not None:
        physical |= {"PhysicalSizeX": pixel_size_um, "PhysicalSizeXUnit": "µm"}
        physical |= {"PhysicalSizeY": pixel_size_um, "PhysicalSizeYUnit": "µm"}
    if z_step_um is not None:
        physical |= {"PhysicalSizeZ": z_step_um, "PhysicalSizeZUnit": "µm"}
    pixels = _sub(
        image,
        "Pixels",
        ID="Pixels:0",
        DimensionOrder="XYCZT",
        Type=pixel_type,
        SizeX=width,
        SizeY=height,
        SizeC=1,
        SizeZ=size_z,
        SizeT=size_t,
        **physical,
    )
    channel = _sub(
        pixels,
        "Channel",
        ID="Channel:0:0",
        SamplesPerPixel=1,
        EmissionWavelength=instrument.emission_nm,
        EmissionWavelengthUnit="nm" if instrument.emission_nm is not None else None,
        Fluor=instrument.fluor,
    )
    if detector_id is not None:
        _sub(
            channel,
            "DetectorSettings",
            ID=detector_id,
            Offset=instrument.offset,
            Gain=instrument.gain,
            Binning=instrument.binning,
        )
    _sub(pixels, "TiffData", IFD=0, PlaneCount=size_z * size_t)
    for plane in planes:
        _sub(pixels, "Plane", TheC=0, **plane)

    structured = _sub(root, "StructuredAnnotations")
    # an empty map says nothing: left out
    annotations = [a for a in annotations if a[0] != "MapAnnotation" or a[2]]
    for index, (kind, namespace, value) in enumerate(annotations):
        annotation_id = f"Annotation:{index}"
        _sub(image, "AnnotationRef", ID=annotation_id)
        element = _sub(structured, kind, ID=annotation_id, Namespace=namespace)
        holder = _sub(element, "Value")
        if kind == "MapAnnotation":
            for key, text in value.items():
                _sub(holder, "M", K=key).text = text
        else:
            holder.text = value
    text = ET.tostring(root, encoding="unicode")
    # ASCII with character references keeps µ & co. intact for every TIFF reader
    return ('<?xml version="1.0" encoding="UTF-8"?>' + text).encode(
        "ascii", "xmlcharrefreplace"
    )


def _sub(parent: ET.Element, name: str, **attributes: Any) -> ET.Element:
    """A child element with the attributes that have a value (None: left out)."""
    return ET.SubElement(
        parent,
        name,
        {k: _attribute(v) for k, v in attributes.items() if v is not None},
    )


def _attribute(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


# --- values ------------------------------------------------------------------------


def _numbers(values: Any) -> list[float] | None:
    """The values as floats when every one is a finite number, else None."""
    found = list(values)
    if not all(_is_number(v) for v in found):
        return None
    return [float(v) for v in found]


def _is_number(value: Any) -> TypeGuard[float]:
    return (
        isinstance(value, (int, float, np.number))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _finite(value: Any) -> float | None:
    """A finite float of a number or numeric text (device properties are text)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _positive(value: Any) -> float | None:
    number = _finite(value)
    return number if number is not None and number > 0 else None


def _iso_datetime(value: Any) -> str | None:
    """``value`` as an xsd:dateTime when it is an ISO 8601 date and time."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).isoformat()
    except ValueError:
        return None


def _text_map(metadata: dict[str, Any]) -> dict[str, str]:
    return {str(k): _as_text(v) for k, v in metadata.items()}


def _json(value: Any) -> str:
    return json.dumps(jsonable(value))


def _as_text(value: Any) -> str:
    value = jsonable(value)
    return value if isinstance(value, str) else json.dumps(value)
