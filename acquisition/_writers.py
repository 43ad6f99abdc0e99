"""Incremental, lossless raw-frame writers.

`OmeTiffWriter` writes one uncompressed TIFF page per frame the moment the frame is
appended, so nothing is held in memory and every appended frame is on disk if the run
stops early. The file explains itself once closed.

Layout of a file written by `OmeTiffWriter`
-------------------------------------------
* Page *k* holds frame *k*. Pages 1..N-1 carry their frame's metadata as a JSON
  ImageDescription (``{"deepz_frame": k, ...}``).
* On `close()`, the ImageDescription of page 0 is replaced by OME-XML (OME 2016-06):

  - ``Pixels``: axes (``TYX`` or ``ZYX``), size, type, ``PhysicalSizeX/Y`` (and
    ``PhysicalSizeZ`` for z-stacks) in µm;
  - one ``Plane`` per frame with ``DeltaT`` (s, from ``time_s``), ``PositionZ`` (µm,
    from ``z_um``) and ``ExposureTime`` (ms, from ``exposure_ms``) where every frame
    has the key;
  - ``StructuredAnnotations``: a ``MapAnnotation`` (namespace ``deepz-live/run``)
    with the run settings and optics as key/value text for viewers such as OMERO,
    and two ``CommentAnnotation``\\ s holding exact JSON: the run metadata
    (``deepz-live/run.json``) and the list of per-frame metadata dicts
    (``deepz-live/frames.json``).

  `read_run_metadata` and `read_frame_metadata` read them back.
* Closed after an exception: the same, holding every frame appended so far.
* Process killed before `close()`: no OME-XML; page 0 carries frame 0's JSON, so the
  file still opens (``tifffile.imread`` gives every complete page) and
  `read_frame_metadata` still recovers per-frame metadata from the pages.

`OmeZarrWriter` writes OME-Zarr (NGFF 0.5, through ome-writers and zarr-python; the
``zarr`` extra) with one chunk per frame and physical scales in the multiscales
metadata; the run and per-frame metadata go into the group attribute ``deepz-live``
(``{"run": ..., "frames": [...]}``) at `close()`. OME-TIFF is the crash-safe choice:
Zarr metadata is only complete once the writer is closed. `open_writer` picks the
format from the file name (``*.ome.zarr`` → Zarr, anything else → OME-TIFF).
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import tifffile

from acquisition._errors import OutputLocationError

if TYPE_CHECKING:
    from types import TracebackType

    from numpy.typing import DTypeLike
    from typing_extensions import Self

__all__ = [
    "OmeTiffWriter",
    "OmeZarrWriter",
    "open_writer",
    "read_frame_metadata",
    "read_run_metadata",
]

RUN_NAMESPACE = "deepz-live/run"
RUN_JSON_NAMESPACE = "deepz-live/run.json"
FRAMES_JSON_NAMESPACE = "deepz-live/frames.json"
_FRAME_KEY = "deepz_frame"
ZARR_ATTRIBUTE = "deepz-live"
ZARR_SUFFIX = ".zarr"
_OME_NS = {"ome": "http://www.openmicroscopy.org/Schemas/OME/2016-06"}

# frame-metadata key -> (OME Plane attribute, unit)
_PLANE_FIELDS = {
    "time_s": ("DeltaT", "s"),
    "z_um": ("PositionZ", "µm"),
    "exposure_ms": ("ExposureTime", "ms"),
}


class _FrameWriter:
    """Shared bookkeeping of the raw-frame writers: checks, metadata, closing."""

    def __init__(
        self,
        path: str | Path,
        *,
        axes: Literal["TYX", "ZYX"] = "TYX",
        dtype: DTypeLike = np.uint16,
        frame_shape: tuple[int, int],
        pixel_size_um: float | None,
        z_step_um: float | None = None,
        run_metadata: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        if axes not in ("TYX", "ZYX"):
            raise ValueError(f"axes must be 'TYX' or 'ZYX', got {axes!r}")
        if len(frame_shape) != 2 or min(frame_shape) < 1:
            raise ValueError(f"frame_shape must be (height, width), got {frame_shape}")
        self.path = Path(path)
        self.axes = axes
        self.dtype = np.dtype(dtype)
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        self.pixel_size_um = _positive_or_none(pixel_size_um)
        self.z_step_um = _positive_or_none(z_step_um)
        self.run_metadata = dict(run_metadata or {})
        self._frame_metadata: list[dict[str, Any]] = []
        self._closed = False
        if self.path.exists() and not overwrite:
            raise OutputLocationError(
                f"{self.path} already exists; choose another output path or allow "
                "overwriting (--overwrite)."
            )
        self._overwrite = overwrite
        try:
            self._open()
        except OSError as exc:
            raise OutputLocationError(
                f"Cannot create {self.path}: {exc.strerror or exc}. Check that the "
                "folder exists and is writable."
            ) from exc

    @property
    def frames_written(self) -> int:
        """Number of frames appended so far."""
        return len(self._frame_metadata)

    @property
    def closed(self) -> bool:
        """Whether `close()` has run."""
        return self._closed

    def append(
        self, frame: np.ndarray, frame_metadata: dict[str, Any] | None = None
    ) -> None:
        """Write one frame (and its metadata) to disk now.

        Parameters
        ----------
        frame : numpy.ndarray
            A ``frame_shape`` array of ``dtype``.
        frame_metadata : dict, optional
            Per-frame values (``time_s``, ``z_um``, ``exposure_ms``, dose, ...).
        """
        if self._closed:
            raise ValueError(f"{self.path} is closed; no more frames can be appended.")
        frame = np.asarray(frame)
        if frame.shape != self.frame_shape:
            raise ValueError(
                f"frame shape {frame.shape} does not match the writer's "
                f"{self.frame_shape}"
            )
        if frame.dtype != self.dtype:
            if not np.can_cast(frame.dtype, self.dtype, casting="safe"):
                raise ValueError(
                    f"frame dtype {frame.dtype} cannot be stored losslessly as "
                    f"{self.dtype}"
                )
            frame = frame.astype(self.dtype)
        meta = _jsonable(dict(frame_metadata or {}))
        self._write(frame, meta)
        self._frame_metadata.append(meta)

    def close(self) -> None:
        """Finish the output. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._finish()

    def _open(self) -> None:
        """Create the output (an OSError becomes an `OutputLocationError`)."""
        raise NotImplementedError

    def _write(self, frame: np.ndarray, meta: dict[str, Any]) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class OmeTiffWriter(_FrameWriter):
    """Write frames to an OME-TIFF one page at a time, as they arrive.

    Parameters
    ----------
    path : str or Path
        Output file, conventionally ``*.ome.tif``. Its folder must exist.
    axes : {"TYX", "ZYX"}
        ``TYX`` for a time-lapse, ``ZYX`` for a z-stack.
    dtype : DTypeLike
        Pixel type of every frame (uint16 for camera data).
    frame_shape : tuple of int
        ``(height, width)`` of every frame.
    pixel_size_um : float or None
        Sample-plane pixel size in µm (OME ``PhysicalSizeX/Y``); None when unknown
        (no pixel-size calibration in the configuration).
    z_step_um : float, optional
        Plane spacing of a z-stack in µm (OME ``PhysicalSizeZ``).
    run_metadata : dict, optional
        Run settings, optics, dose...: anything JSON-serialisable. Stored in the file.
    overwrite : bool
        Replace an existing file. Otherwise an existing file is an error.
    bigtiff : bool
        Write BigTIFF (needed past 4 GiB). Classic TIFF is slightly more widely read.

    Raises
    ------
    OutputLocationError
        The file exists (and ``overwrite`` is False) or cannot be created.
    """

    def __init__(
        self, path: str | Path, *, bigtiff: bool = True, **kwargs: Any
    ) -> None:
        self._bigtiff = bigtiff
        super().__init__(path, **kwargs)

    def _open(self) -> None:
        self._tif = tifffile.TiffWriter(
            self.path, bigtiff=self._bigtiff, byteorder="<", ome=False
        )

    def _write(self, frame: np.ndarray, meta: dict[str, Any]) -> None:
        description = json.dumps({_FRAME_KEY: self.frames_written, **meta})
        self._tif.write(
            frame,
            description=description,
            metadata=None,
            photometric="minisblack",
            contiguous=False,
            software="deepz-live",
        )
        # hand the page to the OS now, so a killed process still leaves it on disk
        self._tif.filehandle.flush()

    def _finish(self) -> None:
        """Write the OME-XML header; a writer closed with no frames leaves no file.

        (An empty TIFF is not readable.)
        """
        self._tif.close()
        if not self._frame_metadata:
            self.path.unlink(missing_ok=True)
            return
        tifffile.tiffcomment(self.path, self._ome_xml(), pageindex=0)

    def _ome_xml(self) -> bytes:
        n = self.frames_written
        height, width = self.frame_shape
        pixels: dict[str, Any] = {}
        if self.pixel_size_um is not None:
            pixels["PhysicalSizeX"] = pixels["PhysicalSizeY"] = self.pixel_size_um
        if self.axes == "ZYX" and self.z_step_um is not None:
            pixels["PhysicalSizeZ"] = self.z_step_um
        plane: dict[str, list[Any]] = {}
        for key, (attribute, unit) in _PLANE_FIELDS.items():
            values = [m.get(key) for m in self._frame_metadata]
            if all(_is_number(v) for v in values):
                plane[attribute] = [float(v) for v in values]
                plane[f"{attribute}Unit"] = [unit] * n
        annotations = {
            "MapAnnotation": {
                "Namespace": RUN_NAMESPACE,
                "Value": {k: _as_text(v) for k, v in self.run_metadata.items()},
            },
            "CommentAnnotation": [
                {
                    "Namespace": RUN_JSON_NAMESPACE,
                    "Value": json.dumps(_jsonable(self.run_metadata)),
                },
                {
                    "Namespace": FRAMES_JSON_NAMESPACE,
                    "Value": json.dumps(self._frame_metadata),
                },
            ],
        }
        omexml = tifffile.OmeXml(Creator="deepz-live")
        omexml.addimage(
            dtype=self.dtype,
            shape=(n, height, width),
            storedshape=(n, 1, 1, height, width, 1),
            axes=self.axes,
            Name=self.path.name.split(".")[0],
            Description=(
                "Raw camera frames written by deepz-live. Run settings: "
                f"MapAnnotation {RUN_NAMESPACE!r}; exact JSON: CommentAnnotations "
                f"{RUN_JSON_NAMESPACE!r} and {FRAMES_JSON_NAMESPACE!r}."
            ),
            **pixels,
            **({"Plane": plane} if plane else {}),
            **annotations,
        )
        # ASCII with character references keeps µ & co. intact for every TIFF reader
        return omexml.tostring(declaration=True).encode("ascii", "xmlcharrefreplace")


class OmeZarrWriter(_FrameWriter):
    """Write frames to OME-Zarr (NGFF 0.5) one chunk per frame, as they arrive.

    Same parameters as `OmeTiffWriter` (without ``bigtiff``). Needs the ``zarr``
    extra: ``pip install "deepz-live[zarr]"``. Run and per-frame metadata are stored
    in the group attribute ``deepz-live`` when the writer is closed.
    """

    def _open(self) -> None:
        try:
            import ome_writers
            import zarr  # noqa: F401  (the backend ome-writers uses here)
        except ImportError as exc:
            raise OutputLocationError(
                f"Writing OME-Zarr ({self.path.name}) needs the zarr extra: "
                'pip install "deepz-live[zarr]", or write OME-TIFF (*.ome.tif).'
            ) from exc
        height, width = self.frame_shape
        zyx = self.axes == "ZYX"
        stack_axis = ome_writers.Dimension(
            name="z" if zyx else "t",
            count=None,  # grows with every frame
            type="space" if zyx else "time",
            chunk_size=1,
            **(
                {"unit": "micrometer", "scale": self.z_step_um}
                if zyx and self.z_step_um is not None
                else {}
            ),
        )
        plane_scale = (
            {"unit": "micrometer", "scale": self.pixel_size_um}
            if self.pixel_size_um is not None
            else {}
        )
        dims = (
            stack_axis,
            ome_writers.Dimension(
                name="y", count=height, type="space", chunk_size=height, **plane_scale
            ),
            ome_writers.Dimension(
                name="x", count=width, type="space", chunk_size=width, **plane_scale
            ),
        )
        settings = ome_writers.AcquisitionSettings(
            root_path=str(self.path),
            dimensions=dims,
            dtype=self.dtype.name,
            format=ome_writers.OmeZarrFormat(backend="zarr-python"),
            overwrite=self._overwrite,
        )
        self._stream = ome_writers.create_stream(settings)

    def _write(self, frame: np.ndarray, meta: dict[str, Any]) -> None:
        self._stream.append(frame)

    def _finish(self) -> None:
        import zarr

        self._stream.close()
        group = zarr.open_group(str(self.path), mode="r+")
        group.attrs[ZARR_ATTRIBUTE] = {
            "run": _jsonable(self.run_metadata),
            "frames": self._frame_metadata,
        }


def open_writer(path: str | Path, **kwargs: Any) -> OmeTiffWriter | OmeZarrWriter:
    """An `OmeZarrWriter` for ``*.zarr`` paths, else an `OmeTiffWriter`.

    Keyword arguments are those of the writers; ``bigtiff`` is ignored for Zarr.
    """
    if _is_zarr(path):
        kwargs.pop("bigtiff", None)
        return OmeZarrWriter(path, **kwargs)
    return OmeTiffWriter(path, **kwargs)


def _is_zarr(path: str | Path) -> bool:
    return Path(path).suffix == ZARR_SUFFIX


def _zarr_attribute(path: str | Path) -> dict[str, Any]:
    import zarr

    group = zarr.open_group(str(path), mode="r")
    return dict(group.attrs.get(ZARR_ATTRIBUTE, {}))


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
    if _is_zarr(path):
        return dict(_zarr_attribute(path).get("run", {}))
    with tifffile.TiffFile(path) as tif:
        ome = tif.ome_metadata
    value = _comment_annotation(ome, RUN_JSON_NAMESPACE) if ome else None
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
    if _is_zarr(path):
        return list(_zarr_attribute(path).get("frames", []))
    with tifffile.TiffFile(path) as tif:
        ome = tif.ome_metadata
        value = _comment_annotation(ome, FRAMES_JSON_NAMESPACE) if ome else None
        if value is not None:
            return list(json.loads(value))
        frames = []
        for index in range(len(tif.pages)):
            page = tif.pages[index]
            page = page.aspage() if isinstance(page, tifffile.TiffFrame) else page
            meta = json.loads(page.description or "{}")
            meta.pop(_FRAME_KEY, None)
            frames.append(meta)
        return frames


def _comment_annotation(ome_xml: str, namespace: str) -> str | None:
    root = ET.fromstring(ome_xml)
    for element in root.iterfind(".//ome:CommentAnnotation", _OME_NS):
        if element.get("Namespace") == namespace:
            value = element.find("ome:Value", _OME_NS)
            return value.text if value is not None else None
    return None


def _positive_or_none(value: float | None) -> float | None:
    if value is None or not value > 0:
        return None
    return float(value)


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float, np.number))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays, Paths and tuples converted."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _as_text(value: Any) -> str:
    value = _jsonable(value)
    return value if isinstance(value, str) else json.dumps(value)
