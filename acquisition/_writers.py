"""Incremental, lossless raw-frame writers.

`OmeTiffWriter` writes one uncompressed TIFF page per frame the moment the frame is
appended, so nothing is held in memory and every appended frame is on disk if the run
stops early. The file explains itself once closed. `OmeTiffVolumeWriter` and
`OmeZarrVolumeWriter` do the same for refocused volumes (axes ``TZYX``).

Crash safety
------------
TIFF pages are appended by `_PageFile`: a page (description, pixels, IFD) is written
after the end of the file first and only then linked from the previous page, with one
small write, unbuffered. So the file is a valid TIFF at every moment: a process killed
at any instant (SIGKILL) leaves every page that was linked, and a write that fails
half-way (disk full) is cut off again and the chain left as it was, before the error
is raised. (Power loss is another matter: pages are handed to the operating system,
not synced to the disk.)

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

import contextlib
import json
import math
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import tifffile

from deepz_live.acquisition._errors import OutputLocationError

if TYPE_CHECKING:
    from types import TracebackType

    from numpy.typing import DTypeLike
    from typing_extensions import Self

__all__ = [
    "OmeTiffVolumeWriter",
    "OmeTiffWriter",
    "OmeZarrVolumeWriter",
    "OmeZarrWriter",
    "open_volume_writer",
    "open_writer",
    "read_frame_metadata",
    "read_run_metadata",
    "read_volume_metadata",
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


# TIFF field types and the pixel types a page can hold
_SHORT, _LONG, _ASCII, _LONG8 = 3, 4, 2, 16
_SAMPLE_FORMAT = {"u": 1, "i": 2, "f": 3}
_CLASSIC_LIMIT = 2**32 - 1


class _PageFile:
    """A TIFF that only grows, one uncompressed grayscale page at a time.

    Valid at every moment (see "Crash safety" in the module docstring): each page is
    written past the end of the file, then linked from the previous page's IFD.

    Parameters
    ----------
    path : Path
        The file; created (or truncated).
    bigtiff : bool
        BigTIFF (64-bit offsets) rather than classic TIFF (files up to 4 GiB).
    """

    def __init__(self, path: Path, *, bigtiff: bool) -> None:
        self.path = path
        self.bigtiff = bigtiff
        if bigtiff:
            header = b"II+\x00" + struct.pack("<HHQ", 8, 0, 0)
            self._offset_format, self._link = "<Q", 8
        else:
            header = b"II*\x00" + struct.pack("<I", 0)
            self._offset_format, self._link = "<I", 4
        # unbuffered: every write reaches the operating system before we go on
        self._fh = open(path, "wb", buffering=0)  # closed in close()
        try:
            self._write_at(0, header)
        except OSError:
            self._fh.close()
            raise
        self._end = len(header)
        self.data_offsets: list[int] = []

    @property
    def pages(self) -> int:
        """Pages written (and linked) so far."""
        return len(self.data_offsets)

    def append(self, array: np.ndarray, description: str) -> None:
        """Write one 2-D page and link it; on an OSError the file is left as before.

        Parameters
        ----------
        array : numpy.ndarray
            A 2-D array of unsigned/signed integers or floats.
        description : str
            The page's ImageDescription (ASCII; JSON with ``ensure_ascii``).
        """
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        height, width = array.shape
        texts = (
            description.encode("ascii", "backslashreplace") + b"\x00",
            b"deepz-live\x00",
        )
        start = self._end
        text_offsets = []
        position = start
        for text in texts:
            text_offsets.append(position)
            position += _even(len(text))
        data_offset = position
        ifd_offset = data_offset + _even(array.nbytes)
        ifd = self._ifd(array, texts, text_offsets, data_offset, height, width)
        end = ifd_offset + len(ifd)
        if not self.bigtiff and end > _CLASSIC_LIMIT:
            raise OSError(
                f"{self.path.name} would grow past 4 GiB, the limit of classic TIFF; "
                "write BigTIFF (bigtiff=True)."
            )
        try:
            self._write_at(start, b"".join(_padded(t) for t in texts))
            self._write_at(data_offset, memoryview(array).cast("B"))
            if array.nbytes % 2:
                self._write_at(data_offset + array.nbytes, b"\x00")
            self._write_at(ifd_offset, ifd)
            # the page is complete: link it (the only write that changes the chain)
            self._write_at(self._link, struct.pack(self._offset_format, ifd_offset))
        except OSError:
            self._undo()
            raise
        self._link = end - struct.calcsize(self._offset_format)
        self._end = end
        self.data_offsets.append(data_offset)

    def read(self, index: int, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
        """Read page ``index`` back from the file (through a handle of its own)."""
        dtype = np.dtype(dtype)
        offset = self.data_offsets[index]
        nbytes = shape[0] * shape[1] * dtype.itemsize
        with open(self.path, "rb") as reader:
            reader.seek(offset)
            data = reader.read(nbytes)
        if len(data) != nbytes:
            raise OSError(f"page {index} of {self.path} is incomplete")
        little = np.frombuffer(data, dtype.newbyteorder("<")).reshape(shape)
        return little.astype(dtype)

    def close(self) -> None:
        """Close the file; `read` still works afterwards."""
        self._fh.close()

    def _write_at(self, offset: int, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        self._fh.seek(offset)
        while view.nbytes:
            written = self._fh.write(view)
            if not written:
                raise OSError(f"could not write to {self.path}")
            view = view[written:]

    def _undo(self) -> None:
        """Cut off a half-written page and make sure the chain still ends before it."""
        with contextlib.suppress(OSError):
            self._fh.truncate(self._end)
        with contextlib.suppress(OSError):
            self._write_at(self._link, struct.pack(self._offset_format, 0))

    def _ifd(
        self,
        array: np.ndarray,
        texts: tuple[bytes, bytes],
        text_offsets: list[int],
        data_offset: int,
        height: int,
        width: int,
    ) -> bytes:
        offset_type = _LONG8 if self.bigtiff else _LONG
        kind = array.dtype.kind
        if kind not in _SAMPLE_FORMAT:
            raise ValueError(f"pages of dtype {array.dtype} cannot be written")
        description, software = texts
        tags = [
            (254, _LONG, 1, 0),  # NewSubfileType
            (256, _LONG, 1, width),
            (257, _LONG, 1, height),
            (258, _SHORT, 1, array.dtype.itemsize * 8),  # BitsPerSample
            (259, _SHORT, 1, 1),  # Compression: none
            (262, _SHORT, 1, 1),  # Photometric: min-is-black
            (270, _ASCII, len(description), text_offsets[0]),
            (273, offset_type, 1, data_offset),  # StripOffsets
            (277, _SHORT, 1, 1),  # SamplesPerPixel
            (278, _LONG, 1, height),  # RowsPerStrip: one strip
            (279, offset_type, 1, array.nbytes),  # StripByteCounts
            (284, _SHORT, 1, 1),  # PlanarConfiguration: contiguous
            (305, _ASCII, len(software), text_offsets[1]),
            (339, _SHORT, 1, _SAMPLE_FORMAT[kind]),
        ]
        if self.bigtiff:
            entry, count, inline = "<HHQQ", "<Q", 8
        else:
            entry, count, inline = "<HHII", "<H", 4
        parts = [struct.pack(count, len(tags))]
        for code, kind_, n, value in tags:
            if kind_ == _ASCII and n <= inline:  # short text lives in the entry
                text = texts[0] if code == 270 else texts[1]
                value = int.from_bytes(text.ljust(inline, b"\x00"), "little")
            parts.append(struct.pack(entry, code, kind_, n, value))
        parts.append(struct.pack(self._offset_format, 0))  # no next page yet
        return b"".join(parts)


def _even(n: int) -> int:
    return n + (n % 2)


def _padded(data: bytes) -> bytes:
    return data + b"\x00" * (len(data) % 2)


class _OutputFile:
    """What frame and volume writers share: open once, append, close once.

    Subclasses set ``path`` and ``_closed = False``, call `_create_output`, and
    implement ``_open`` (create the file; an OSError becomes an
    `OutputLocationError`), ``_write`` (one frame or volume) and ``_finish``.
    """

    path: Path
    _closed: bool

    @property
    def closed(self) -> bool:
        """Whether `close()` has run."""
        return self._closed

    def close(self) -> None:
        """Finish the output. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._finish()

    def _open(self) -> None:
        raise NotImplementedError

    def _write(self, data: np.ndarray, meta: dict[str, Any]) -> None:
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


class _FrameWriter(_OutputFile):
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
        _create_output(self, overwrite, "output path")

    @property
    def frames_written(self) -> int:
        """Number of frames appended so far."""
        return len(self._frame_metadata)

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
        self._pages = _PageFile(self.path, bigtiff=self._bigtiff)

    def _write(self, frame: np.ndarray, meta: dict[str, Any]) -> None:
        # the page reaches the OS before this returns (see "Crash safety")
        self._pages.append(frame, json.dumps({_FRAME_KEY: self.frames_written, **meta}))

    def read_frame(self, index: int) -> np.ndarray:
        """Read frame ``index`` back from the file (also while frames are appended).

        Safe to call from another thread than the one appending, for frames already
        appended; also works after `close()`.
        """
        if not 0 <= index < self._pages.pages:
            raise IndexError(
                f"frame {index} is not in {self.path} ({self._pages.pages} written)"
            )
        return self._pages.read(index, self.frame_shape, self.dtype)

    def _finish(self) -> None:
        """Write the OME-XML header; a writer closed with no frames leaves no file.

        (An empty TIFF is not readable.)
        """
        self._pages.close()
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

    def read_frame(self, index: int) -> np.ndarray:
        """Read frame ``index`` back from the store (also while frames are appended).

        Each appended frame is one chunk written before `append` returns.
        """
        import zarr

        if not 0 <= index < self.frames_written:
            raise IndexError(
                f"frame {index} is not in {self.path} ({self.frames_written} written)"
            )
        return np.asarray(zarr.open_array(str(self.path / "0"), mode="r")[index])

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


# -- refocused volumes ---------------------------------------------------------------
VOLUMES_NAMESPACE = "deepz-live/volumes"
VOLUMES_RUN_JSON_NAMESPACE = "deepz-live/volumes-run.json"
VOLUMES_JSON_NAMESPACE = "deepz-live/volumes.json"
_VOLUME_KEY = "deepz_volume"


class _VolumeWriter(_OutputFile):
    """Shared bookkeeping of the volume writers: checks, metadata, closing."""

    def __init__(
        self,
        path: str | Path,
        *,
        planes_um: Any,
        frame_shape: tuple[int, int],
        pixel_size_um: float | None,
        run_metadata: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        planes = np.atleast_1d(np.asarray(planes_um, dtype=np.float64))
        if planes.ndim != 1 or planes.size == 0 or not np.all(np.isfinite(planes)):
            raise ValueError(
                f"planes_um must be a list of distances, got {planes_um!r}"
            )
        if len(frame_shape) != 2 or min(frame_shape) < 1:
            raise ValueError(f"frame_shape must be (height, width), got {frame_shape}")
        self.path = Path(path)
        self.planes_um = tuple(float(p) for p in planes)
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        self.pixel_size_um = _positive_or_none(pixel_size_um)
        self.z_step_um = _uniform_step(self.planes_um)
        self.run_metadata = {**(run_metadata or {}), "planes_um": list(self.planes_um)}
        self._volume_metadata: list[dict[str, Any]] = []
        self._closed = False
        _create_output(self, overwrite, "volume output")

    @property
    def volumes_written(self) -> int:
        """Number of volumes appended so far."""
        return len(self._volume_metadata)

    def append(
        self, volume: np.ndarray, volume_metadata: dict[str, Any] | None = None
    ) -> None:
        """Write one volume (``(planes, height, width)``, float) to disk now.

        Parameters
        ----------
        volume : numpy.ndarray
            The refocused planes, in the order of ``planes_um``; stored as float32.
        volume_metadata : dict, optional
            Per-volume values: ``frame_index``, ``time_s``, ``z_um``, latency...
        """
        if self._closed:
            raise ValueError(f"{self.path} is closed; no more volumes can be appended.")
        volume = np.asarray(volume)
        expected = (len(self.planes_um), *self.frame_shape)
        if volume.shape != expected:
            raise ValueError(
                f"volume shape {volume.shape} does not match the writer's {expected} "
                "(planes, height, width)"
            )
        if not np.issubdtype(volume.dtype, np.floating):
            raise ValueError(f"volumes must be floating point, got {volume.dtype}")
        meta = _jsonable(dict(volume_metadata or {}))
        self._write(volume.astype(np.float32, copy=False), meta)
        self._volume_metadata.append(meta)


class OmeTiffVolumeWriter(_VolumeWriter):
    """Write refocused volumes to an OME-TIFF (axes ``TZYX``, float32), as they come.

    Each volume is written as one page per plane the moment it is appended (crash
    safe, like `OmeTiffWriter`). On `close()` page 0 gets the OME-XML: ``TZYX``
    sizes, ``PhysicalSizeX/Y``, ``PhysicalSizeZ`` (the plane step, when the planes
    are evenly spaced), per-plane ``DeltaT`` and ``PositionZ`` (frame focus + plane
    offset) where known, a ``MapAnnotation`` (namespace ``deepz-live/volumes``) and
    exact JSON in ``CommentAnnotation``\\ s: the run metadata with the plane list
    and the model's identity (``deepz-live/volumes-run.json``) and one dict per
    volume (``deepz-live/volumes.json``). `read_volume_metadata` reads them back,
    also from a file that was never closed.

    Parameters
    ----------
    path : str or Path
        Output file, conventionally ``*.volumes.ome.tif``. Its folder must exist.
    planes_um : sequence of float
        The refocusing distances (µm from the frame's focus) of the planes.
    frame_shape : tuple of int
        ``(height, width)`` of every plane.
    pixel_size_um : float or None
        Sample-plane pixel size in µm.
    run_metadata : dict, optional
        Anything JSON-serialisable (model identity, settings...). ``planes_um`` is
        added.
    overwrite : bool
        Replace an existing file.
    bigtiff : bool
        Write BigTIFF (default; volumes pass 4 GiB quickly).

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
        self._pages = _PageFile(self.path, bigtiff=self._bigtiff)

    def _write(self, volume: np.ndarray, meta: dict[str, Any]) -> None:
        index = self.volumes_written
        for plane, image in enumerate(volume):
            extra = meta if plane == 0 else {}
            tag = {_VOLUME_KEY: index, "plane": plane, **extra}
            self._pages.append(image, json.dumps(tag))

    def _finish(self) -> None:
        self._pages.close()
        if not self._volume_metadata:
            self.path.unlink(missing_ok=True)
            return
        tifffile.tiffcomment(self.path, self._ome_xml(), pageindex=0)

    def _ome_xml(self) -> bytes:
        n_t, n_z = self.volumes_written, len(self.planes_um)
        height, width = self.frame_shape
        pixels: dict[str, Any] = {}
        if self.pixel_size_um is not None:
            pixels["PhysicalSizeX"] = pixels["PhysicalSizeY"] = self.pixel_size_um
        if self.z_step_um is not None:
            pixels["PhysicalSizeZ"] = self.z_step_um
        plane: dict[str, list[Any]] = {}
        times = [m.get("time_s") for m in self._volume_metadata]
        if all(_is_number(t) for t in times):
            plane["DeltaT"] = [float(t) for t in times for _ in range(n_z)]
            plane["DeltaTUnit"] = ["s"] * (n_t * n_z)
        focus = [m.get("z_um") for m in self._volume_metadata]
        if all(_is_number(z) for z in focus):
            plane["PositionZ"] = [float(z) + dz for z in focus for dz in self.planes_um]
            plane["PositionZUnit"] = ["µm"] * (n_t * n_z)
        omexml = tifffile.OmeXml(Creator="deepz-live")
        omexml.addimage(
            dtype=np.float32,
            shape=(n_t, n_z, height, width),
            storedshape=(n_t * n_z, 1, 1, height, width, 1),
            axes="TZYX",
            Name=self.path.name.split(".")[0],
            Description=(
                "Volumes refocused by deepz-live, one per frame (TZYX; planes at "
                f"{list(self.planes_um)} µm from the frame's focus). Model and run: "
                f"MapAnnotation {VOLUMES_NAMESPACE!r}; exact JSON: CommentAnnotations "
                f"{VOLUMES_RUN_JSON_NAMESPACE!r} and {VOLUMES_JSON_NAMESPACE!r}."
            ),
            **pixels,
            **({"Plane": plane} if plane else {}),
            MapAnnotation={
                "Namespace": VOLUMES_NAMESPACE,
                "Value": {k: _as_text(v) for k, v in self.run_metadata.items()},
            },
            CommentAnnotation=[
                {
                    "Namespace": VOLUMES_RUN_JSON_NAMESPACE,
                    "Value": json.dumps(_jsonable(self.run_metadata)),
                },
                {
                    "Namespace": VOLUMES_JSON_NAMESPACE,
                    "Value": json.dumps(self._volume_metadata),
                },
            ],
        )
        return omexml.tostring(declaration=True).encode("ascii", "xmlcharrefreplace")


class OmeZarrVolumeWriter(_VolumeWriter):
    """Write refocused volumes to OME-Zarr (NGFF 0.5, axes ``tzyx``, float32).

    Same parameters as `OmeTiffVolumeWriter` (without ``bigtiff``); one chunk per
    plane, z scale = the plane step when the planes are evenly spaced. Run and
    per-volume metadata go into the group attribute ``deepz-live``
    (``{"run": ..., "volumes": [...]}``) at `close()`. Needs the ``zarr`` extra.
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
        plane_scale = (
            {"unit": "micrometer", "scale": self.pixel_size_um}
            if self.pixel_size_um is not None
            else {}
        )
        z_scale = (
            {"unit": "micrometer", "scale": self.z_step_um}
            if self.z_step_um is not None
            else {"unit": "micrometer"}
        )
        dims = (
            ome_writers.Dimension(name="t", count=None, type="time", chunk_size=1),
            ome_writers.Dimension(
                name="z",
                count=len(self.planes_um),
                type="space",
                chunk_size=1,
                **z_scale,
            ),
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
            dtype="float32",
            format=ome_writers.OmeZarrFormat(backend="zarr-python"),
            overwrite=self._overwrite,
        )
        self._stream = ome_writers.create_stream(settings)

    def _write(self, volume: np.ndarray, meta: dict[str, Any]) -> None:
        for image in volume:
            self._stream.append(image)

    def _finish(self) -> None:
        import zarr

        self._stream.close()
        group = zarr.open_group(str(self.path), mode="r+")
        group.attrs[ZARR_ATTRIBUTE] = {
            "run": _jsonable(self.run_metadata),
            "volumes": self._volume_metadata,
        }


def open_volume_writer(
    path: str | Path, **kwargs: Any
) -> OmeTiffVolumeWriter | OmeZarrVolumeWriter:
    """An `OmeZarrVolumeWriter` for ``*.zarr`` paths, else an `OmeTiffVolumeWriter`.

    Keyword arguments are those of the writers; ``bigtiff`` is ignored for Zarr.
    """
    if _is_zarr(path):
        kwargs.pop("bigtiff", None)
        return OmeZarrVolumeWriter(path, **kwargs)
    return OmeTiffVolumeWriter(path, **kwargs)


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
    if _is_zarr(path):
        attribute = _zarr_attribute(path)
        return {
            "run": dict(attribute.get("run", {})),
            "volumes": list(attribute.get("volumes", [])),
        }
    with tifffile.TiffFile(path) as tif:
        ome = tif.ome_metadata
        run = _comment_annotation(ome, VOLUMES_RUN_JSON_NAMESPACE) if ome else None
        volumes = _comment_annotation(ome, VOLUMES_JSON_NAMESPACE) if ome else None
        if run is not None and volumes is not None:
            return {"run": json.loads(run), "volumes": list(json.loads(volumes))}
        found = []
        for index in range(len(tif.pages)):
            page = tif.pages[index]
            page = page.aspage() if isinstance(page, tifffile.TiffFrame) else page
            meta = json.loads(page.description or "{}")
            if meta.pop("plane", None) == 0:
                meta.pop(_VOLUME_KEY, None)
                found.append(meta)
        return {"run": {}, "volumes": found}


def _uniform_step(planes: tuple[float, ...]) -> float | None:
    """The plane spacing when the planes are evenly spaced and increasing."""
    if len(planes) < 2:
        return None
    steps = np.diff(planes)
    if steps[0] > 0 and np.allclose(steps, steps[0], rtol=1e-6, atol=1e-9):
        return float(round(steps[0], 9))
    return None


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


def _create_output(writer: Any, overwrite: bool, what: str) -> None:
    """Open ``writer.path`` via ``writer._open()``, with the errors users need.

    An existing file is refused unless ``overwrite``; an OS error (missing folder,
    no permission) becomes an `OutputLocationError` that says what to check.
    """
    path = writer.path
    if path.exists() and not overwrite:
        raise OutputLocationError(
            f"{path} already exists; choose another {what} or allow overwriting "
            "(--overwrite)."
        )
    writer._overwrite = overwrite
    try:
        writer._open()
    except OSError as exc:
        raise OutputLocationError(
            f"Cannot create {path}: {exc.strerror or exc}. Check that the folder "
            "exists and is writable."
        ) from exc
