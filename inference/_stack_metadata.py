"""What a TIFF file says about its geometry and optics: OME-XML and ImageJ metadata.

Parsed here with ``xml.etree``: the pixel size, the z step or per-plane z positions,
channel names, emission wavelengths, the objective's NA and the camera offset, each
where the file records it (None where it does not). deepz-live's own OME-TIFFs
(``deepz zstack``) also carry the exact per-frame JSON and the run metadata JSON as
OME annotations, read through `deepz_live._metadata_format` (the file format, shared
with ``acquisition`` without either layer importing the other); those win over the
OME-XML's rounded values.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deepz_live._metadata_format import (
    FRAMES_JSON_NAMESPACE,
    RUN_JSON_NAMESPACE,
    annotated_list,
    annotated_object,
)
from deepz_live.inference._errors import StackFormatError

if TYPE_CHECKING:
    from pathlib import Path

    import tifffile

__all__ = ["FileMetadata", "imagej_metadata", "ome_metadata"]

# Length units seen in OME-XML and ImageJ descriptions -> µm per unit. ImageJ writes
# µ as the literal escape "\u00B5" (its descriptions are ASCII).
_UM_PER_UNIT = {
    "µm": 1.0,
    "μm": 1.0,  # Greek small mu, which some writers use instead of the micro sign
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "\\u00b5m": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "m": 1e6,
    "å": 1e-4,
}


@dataclass
class FileMetadata:
    """What a file says about its geometry and optics (None: it does not say)."""

    pixel_um: tuple[float, float] | None = None
    dz_um: float | None = None
    # (t, c) -> per-plane z (µm), from deepz frames or OME Plane PositionZ
    plane_z_um: dict[tuple[int, int], list[float]] | None = None
    channel_names: list[str] | None = None
    wavelength_um: list[float | None] | None = None  # per channel
    na: float | None = None
    camera_offset: list[float | None] | None = None  # per channel


def _length_um(value: str | None, unit: str | None, default_unit: str = "µm") -> float:
    """A positive OME/ImageJ length in µm, or NaN when absent or unusable."""
    number = _float(value)
    scale = _UM_PER_UNIT.get((unit or default_unit).strip().lower())
    if number is None or scale is None or not number > 0:
        return math.nan
    return number * scale


def _float(value: Any) -> float | None:
    """Float of a number or numeric string (run metadata stores strings)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# --- OME-XML -----------------------------------------------------------------------


def _local(tag: str) -> str:
    """Tag name without its XML namespace (OME schema versions differ)."""
    return tag.rsplit("}", 1)[-1]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in element if _local(e.tag) == name]


def ome_metadata(ome_xml: str, path: Path) -> FileMetadata:
    """Geometry and optics from OME-XML, overlaid with deepz-live's own JSON.

    Raises
    ------
    StackFormatError
        The OME-XML is not XML, or deepz-live's run metadata is not JSON.
    """
    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError as exc:
        raise StackFormatError(
            f"{path}: its OME-XML is not valid XML ({exc})."
        ) from exc
    meta = FileMetadata()
    image = next((e for e in root.iter() if _local(e.tag) == "Image"), None)
    pixels = None if image is None else next(iter(_children(image, "Pixels")), None)
    if pixels is None:
        return meta
    py = _length_um(pixels.get("PhysicalSizeY"), pixels.get("PhysicalSizeYUnit"))
    px = _length_um(pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeXUnit"))
    if math.isfinite(py) and math.isfinite(px):
        meta.pixel_um = (py, px)
    dz = _length_um(pixels.get("PhysicalSizeZ"), pixels.get("PhysicalSizeZUnit"))
    meta.dz_um = dz if math.isfinite(dz) else None

    channels = _children(pixels, "Channel")
    meta.channel_names = [ch.get("Name") or "" for ch in channels]
    wavelengths = []
    offsets = []
    for ch in channels:
        wl = _length_um(
            ch.get("EmissionWavelength"), ch.get("EmissionWavelengthUnit"), "nm"
        )
        wavelengths.append(wl if math.isfinite(wl) else None)
        settings = next(iter(_children(ch, "DetectorSettings")), None)
        offsets.append(None if settings is None else _float(settings.get("Offset")))
    meta.wavelength_um = wavelengths
    meta.camera_offset = offsets
    meta.na = _ome_lens_na(root, image)

    positions: dict[tuple[int, int], dict[int, float]] = {}
    for plane in _children(pixels, "Plane"):
        raw = _float(plane.get("PositionZ"))
        if raw is None:
            continue
        # PositionZ may be zero or negative (a stage coordinate): convert the unit
        # without the positivity rule of _length_um.
        scale = _UM_PER_UNIT.get((plane.get("PositionZUnit") or "µm").strip().lower())
        if scale is None:
            continue
        z = raw * scale
        key = (int(plane.get("TheT", 0)), int(plane.get("TheC", 0)))
        positions.setdefault(key, {})[int(plane.get("TheZ", 0))] = z
    meta.plane_z_um = {
        key: [by_z[i] for i in sorted(by_z)] for key, by_z in positions.items()
    }

    try:
        run = annotated_object(ome_xml, RUN_JSON_NAMESPACE)
        frames = annotated_list(ome_xml, FRAMES_JSON_NAMESPACE)
    except ValueError as exc:
        raise StackFormatError(
            f"{path}: its deepz-live metadata is not the JSON deepz-live writes "
            f"({exc})."
        ) from exc
    if run is not None or frames is not None:
        _apply_deepz_metadata(meta, run or {}, frames or [])
    return meta


def _ome_lens_na(root: ET.Element, image: ET.Element | None) -> float | None:
    """NA of the objective the image refers to (or of the only objective)."""
    objectives = [e for e in root.iter() if _local(e.tag) == "Objective"]
    settings = (
        None
        if image is None
        else next(iter(_children(image, "ObjectiveSettings")), None)
    )
    if settings is not None:
        for objective in objectives:
            if objective.get("ID") == settings.get("ID"):
                return _float(objective.get("LensNA"))
    if len(objectives) == 1:
        return _float(objectives[0].get("LensNA"))
    return None


def _apply_deepz_metadata(
    meta: FileMetadata, run: dict[str, Any], frames: list[dict[str, Any]]
) -> None:
    """Overlay the exact JSON that deepz-live stores next to its OME-XML."""
    devices = run.get("devices")
    devices = devices if isinstance(devices, dict) else {}
    optics = devices.get("Optics") or {}
    camera = devices.get(run.get("camera") or "Camera") or devices.get("Camera") or {}
    na = _float(optics.get("NA"))
    wavelength_nm = _float(optics.get("EmissionWavelength_nm"))
    offset = _float(camera.get("Offset"))
    if na is not None:
        meta.na = na
    if wavelength_nm is not None:
        meta.wavelength_um = [wavelength_nm / 1000.0]
    if offset is not None:
        meta.camera_offset = [offset]
    if frames:
        z = [_float(f.get("z_um")) for f in frames]
        if all(v is not None for v in z):
            # deepz-live writes one frame per plane, in acquisition order
            meta.plane_z_um = {(0, 0): [float(v) for v in z if v is not None]}


# --- ImageJ ------------------------------------------------------------------------


def imagej_metadata(tif: tifffile.TiffFile) -> FileMetadata:
    """Pixel size and z step of a calibrated ImageJ hyperstack (none: uncalibrated)."""
    ij = tif.imagej_metadata or {}
    meta = FileMetadata()
    unit = str(ij.get("unit", "")).strip().lower()
    scale = _UM_PER_UNIT.get(unit)
    if scale is None:
        # uncalibrated ("pixel", no unit): ImageJ's defaults of 1 mean nothing
        return meta
    page = tif.pages.first
    pixel = []
    for tag in ("YResolution", "XResolution"):
        value = page.tags.get(tag)
        pixels_per_unit = math.nan
        if value is not None:
            num, den = value.value
            pixels_per_unit = num / den if den else math.nan
        pixel.append(
            scale / pixels_per_unit
            if math.isfinite(pixels_per_unit) and pixels_per_unit > 0
            else math.nan
        )
    if all(math.isfinite(p) for p in pixel):
        meta.pixel_um = (pixel[0], pixel[1])
    # ImageJ omits "spacing" when the voxel depth is exactly 1 unit (its FileSaver),
    # so a calibrated file without it means 1 unit, as Fiji shows it.
    spacing = _float(ij.get("spacing", 1.0))
    if spacing is not None and spacing > 0:
        meta.dz_um = spacing * scale
    return meta
