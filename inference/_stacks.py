"""Read z-stacks (the raw material of Deep-Z training) from TIFF files.

`read_stacks` understands three flavours of file:

* deepz-live's own OME-TIFFs (``deepz zstack``): voxel size from OME-XML, per-plane z
  from the exact per-frame JSON, and optics (NA, emission wavelength) and camera
  offset from the run metadata JSON. Parsed here with ``xml.etree`` and ``json``, so
  this layer stays independent of ``acquisition``.
* Generic OME-TIFF and ImageJ hyperstacks with axes ZYX, TZYX (one stack per time
  point), ZCYX or CZYX (pick a channel).
* Plain multi-page TIFFs (pages = planes), which carry no voxel size: the caller
  supplies it (``voxel_um=``, ``--voxel-um Z,Y,X`` on the command line).
"""

from __future__ import annotations

import hashlib
import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile

from deepz_live.inference._errors import StackFormatError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["ZStack", "read_stacks"]

RUN_JSON_NAMESPACE = "deepz-live/run.json"
FRAMES_JSON_NAMESPACE = "deepz-live/frames.json"

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

_VOXEL_HINT = (
    "Give the voxel size in µm: voxel_um=(z, y, x) in Python, or --voxel-um Z,Y,X on "
    "the command line (e.g. --voxel-um 0.3,0.13,0.13)."
)


@dataclass(frozen=True, eq=False)
class ZStack:
    """One z-stack of a single channel and time point, in raw intensity units.

    Parameters
    ----------
    data : numpy.ndarray
        ``(Z, Y, X)`` intensities as recorded (camera counts), stored as float32.
    z_um : numpy.ndarray
        ``(Z,)`` focus position of each plane in µm, strictly increasing.
    pixel_um : tuple of float
        Sample-plane pixel size ``(y, x)`` in µm.
    source : str
        Where the stack came from, e.g. ``"run.ome.tif"``, ``"movie.tif[t=2]"`` or
        ``"pair.tif[c=1]"``.
    wavelength_um : float or None
        Emission wavelength in µm, where the file records it.
    na : float or None
        Numerical aperture of the objective, where the file records it.
    camera_offset : float or None
        Camera dark level (counts added to every pixel), where the file records it.
    clean : numpy.ndarray or None
        ``(Z, Y, X)`` noise-free twin of ``data`` in the same units (the expected
        camera signal), where the simulator saved one (``deepz zstack
        --ground-truth``): clean training targets and clean evaluation scores.
    objects : numpy.ndarray or None
        ``(N, 3)`` true ``(z_um, y_px, x_px)`` of the objects in the stack (the
        focus position at which each is sharpest, on ``z_um``'s axis, and its pixel
        position), where the simulator saved them.

    Raises
    ------
    ValueError
        Inconsistent shapes, fewer than 2 planes, z not strictly increasing, or a
        non-positive pixel size.
    """

    data: np.ndarray
    z_um: np.ndarray
    pixel_um: tuple[float, float]
    source: str
    wavelength_um: float | None = None
    na: float | None = None
    camera_offset: float | None = None
    clean: np.ndarray | None = None
    objects: np.ndarray | None = None

    def __post_init__(self) -> None:
        data = np.ascontiguousarray(self.data, dtype=np.float32)
        z_um = np.asarray(self.z_um, dtype=np.float64).reshape(-1)
        if data.ndim != 3:
            raise ValueError(f"ZStack data must be (Z, Y, X), got shape {data.shape}")
        if data.shape[0] < 2:
            raise ValueError(f"a ZStack needs at least 2 planes, got {data.shape[0]}")
        if z_um.shape != (data.shape[0],):
            raise ValueError(
                f"z_um has {z_um.size} values for {data.shape[0]} planes "
                f"({self.source})"
            )
        if not np.all(np.isfinite(z_um)) or not np.all(np.diff(z_um) > 0):
            raise ValueError(f"z_um must be finite and strictly increasing: {z_um}")
        pixel = (float(self.pixel_um[0]), float(self.pixel_um[1]))
        if not all(math.isfinite(p) and p > 0 for p in pixel):
            raise ValueError(f"pixel_um must be positive, got {self.pixel_um}")
        if self.clean is not None:
            clean = np.ascontiguousarray(self.clean, dtype=np.float32)
            if clean.shape != data.shape:
                raise ValueError(
                    f"the noise-free twin of {self.source} has shape {clean.shape}, "
                    f"the stack {data.shape}"
                )
            object.__setattr__(self, "clean", clean)
        if self.objects is not None:
            objects = np.asarray(self.objects, dtype=np.float64).reshape(-1, 3)
            object.__setattr__(self, "objects", objects)
        # frozen dataclass: normalise the fields once, here
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "z_um", z_um)
        object.__setattr__(self, "pixel_um", pixel)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(Z, Y, X)`` size of the stack."""
        z, y, x = self.data.shape
        return z, y, x

    @property
    def voxel_um(self) -> tuple[float, float, float]:
        """``(dz, py, px)`` in µm; dz is the median plane spacing."""
        return (
            float(np.median(np.diff(self.z_um))),
            self.pixel_um[0],
            self.pixel_um[1],
        )

    def crop_columns(self, x_start: int, x_stop: int) -> ZStack:
        """The stack restricted to columns ``x_start:x_stop`` (source gets ``[x=a:b]``).

        Raises
        ------
        ValueError
            An empty or out-of-range band.
        """
        return self.crop(0, self.data.shape[1], x_start, x_stop)

    def crop(self, y_start: int, y_stop: int, x_start: int, x_stop: int) -> ZStack:
        """The stack cut to rows ``y_start:y_stop``, columns ``x_start:x_stop``.

        ``source`` gets ``[y=a:b]`` and/or ``[x=a:b]`` for the axes actually cut;
        the noise-free twin and the objects are cut alike.

        Raises
        ------
        ValueError
            An empty or out-of-range band.
        """
        _, height, width = self.data.shape
        for name, start, stop, size in (
            ("Row", y_start, y_stop, height),
            ("Column", x_start, x_stop, width),
        ):
            if not 0 <= start < stop <= size:
                raise ValueError(
                    f"{name} range {start}:{stop} is outside {self.source} "
                    f"({'height' if name == 'Row' else 'width'} {size} px); choose "
                    f"0 ≤ start < stop ≤ {size}."
                )
        if (y_start, y_stop, x_start, x_stop) == (0, height, 0, width):
            return self
        tags = ""
        if (y_start, y_stop) != (0, height):
            tags += f"[y={y_start}:{y_stop}]"
        if (x_start, x_stop) != (0, width):
            tags += f"[x={x_start}:{x_stop}]"
        objects = self.objects
        if objects is not None:
            inside = (
                (objects[:, 1] >= y_start - 0.5)
                & (objects[:, 1] < y_stop - 0.5)
                & (objects[:, 2] >= x_start - 0.5)
                & (objects[:, 2] < x_stop - 0.5)
            )
            objects = objects[inside] - np.array([0.0, y_start, x_start])
        window = (slice(None), slice(y_start, y_stop), slice(x_start, x_stop))
        return replace(
            self,
            data=self.data[window],
            source=f"{self.source}{tags}",
            clean=None if self.clean is None else self.clean[window],
            objects=objects,
        )

    @property
    def has_ground_truth(self) -> bool:
        """Whether the stack carries its noise-free twin (simulator ground truth)."""
        return self.clean is not None

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the pixels, plane positions and pixel size.

        Identifies the training data in a model's provenance: two stacks with the
        same fingerprint hold the same numbers at the same geometry.
        """
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.data, dtype="<f4").tobytes())
        digest.update(np.ascontiguousarray(self.z_um, dtype="<f8").tobytes())
        digest.update(np.asarray(self.pixel_um, dtype="<f8").tobytes())
        return digest.hexdigest()

    def __repr__(self) -> str:
        dz, py, px = self.voxel_um
        return (
            f"ZStack({self.source!r}, shape={self.shape}, "
            f"voxel_um=({dz:.4g}, {py:.4g}, {px:.4g}))"
        )


@dataclass
class _FileMetadata:
    """What a file says about its geometry and optics (None: it does not say)."""

    pixel_um: tuple[float, float] | None = None
    dz_um: float | None = None
    # (t, c) -> per-plane z (µm), from deepz frames or OME Plane PositionZ
    plane_z_um: dict[tuple[int, int], list[float]] | None = None
    channel_names: list[str] | None = None
    wavelength_um: list[float | None] | None = None  # per channel
    na: float | None = None
    camera_offset: list[float | None] | None = None  # per channel


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
            meta = _ome_metadata(tif.ome_metadata, path)
            kind = "ome"
        elif tif.is_imagej:
            meta = _imagej_metadata(tif)
            kind = "imagej"
        else:
            meta = _FileMetadata()
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
    clean, objects = _ground_truth(path, n_t, data.shape[2:])
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


def _ground_truth(
    path: Path, n_t: int, shape: tuple[int, ...]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The simulator's noise-free twin and objects beside a stack, if it saved them.

    ``deepz zstack --ground-truth`` writes ``<stem>.clean.ome.tif`` (the planes
    without noise) and ``<stem>.objects.csv`` (each object's in-focus z and pixel
    position) next to ``<stem>.ome.tif``. Only single-time-point stacks have them;
    a twin of another shape is ignored (it belongs to another recording).
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
    meta: _FileMetadata,
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


# --- OME-XML -----------------------------------------------------------------------


def _local(tag: str) -> str:
    """Tag name without its XML namespace (OME schema versions differ)."""
    return tag.rsplit("}", 1)[-1]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in element if _local(e.tag) == name]


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


def _ome_metadata(ome_xml: str, path: Path) -> _FileMetadata:
    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError as exc:
        raise StackFormatError(
            f"{path}: its OME-XML is not valid XML ({exc})."
        ) from exc
    meta = _FileMetadata()
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

    annotations = {
        e.get("Namespace"): _annotation_value(e)
        for e in root.iter()
        if _local(e.tag) == "CommentAnnotation"
    }
    if RUN_JSON_NAMESPACE in annotations or FRAMES_JSON_NAMESPACE in annotations:
        _apply_deepz_annotations(meta, annotations, path)
    return meta


def _annotation_value(element: ET.Element) -> str | None:
    value = next(iter(_children(element, "Value")), None)
    return None if value is None else value.text


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


def _apply_deepz_annotations(
    meta: _FileMetadata, annotations: dict[str | None, str | None], path: Path
) -> None:
    """Overlay the exact JSON that deepz-live stores next to its OME-XML."""
    try:
        run = json.loads(annotations.get(RUN_JSON_NAMESPACE) or "{}")
        frames = json.loads(annotations.get(FRAMES_JSON_NAMESPACE) or "[]")
    except json.JSONDecodeError as exc:
        raise StackFormatError(
            f"{path}: the deepz-live run metadata is not valid JSON ({exc})."
        ) from exc
    devices = run.get("devices") if isinstance(run, dict) else None
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
    if isinstance(frames, list) and frames:
        z = [_float(f.get("z_um")) if isinstance(f, dict) else None for f in frames]
        if all(v is not None for v in z):
            # deepz-live writes one frame per plane, in acquisition order
            meta.plane_z_um = {(0, 0): [float(v) for v in z if v is not None]}


# --- ImageJ ------------------------------------------------------------------------


def _imagej_metadata(tif: tifffile.TiffFile) -> _FileMetadata:
    ij = tif.imagej_metadata or {}
    meta = _FileMetadata()
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
