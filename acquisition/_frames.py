"""Incremental, lossless writers of raw camera frames: OME-TIFF and OME-Zarr.

`OmeTiffWriter` writes one uncompressed TIFF page per frame the moment the frame is
appended (through the crash-safe `_tiff.PageFile`), so nothing is held in memory and
every appended frame is on disk if the run stops early. The file explains itself once
closed.

Layout of a file written by `OmeTiffWriter`
-------------------------------------------
* Page *k* holds frame *k*. Pages 1..N-1 carry their frame's metadata as a JSON
  ImageDescription (``{"deepz_frame": k, ...}``); page 0's, until `close()`, also
  holds the run metadata (``{"deepz_frame": 0, "deepz_run": {...}, ...}``), so that
  a file that is never closed still says what microscope and settings it came from
  (`deepz_live._metadata_format` owns this layout and the annotation namespaces).
* On `close()`, the ImageDescription of page 0 is replaced by OME-XML (OME 2016-06,
  see `_omexml` for the details):

  - ``Instrument`` with ``Objective`` (``LensNA``, ``NominalMagnification``,
    ``Immersion``) and ``Detector``, referenced from the image
    (``ObjectiveSettings``: medium and refractive index) and its one ``Channel``
    (``EmissionWavelength``, ``DetectorSettings``: ``Offset``, ``Gain``,
    ``Binning``), each where the run metadata records it (``devices``, ``camera``);
    ``AcquisitionDate`` from the run's ``started``;
  - ``Pixels``: axes (``TYX`` or ``ZYX``), size, type, ``PhysicalSizeX/Y`` (and
    ``PhysicalSizeZ`` for z-stacks: focus-drive travel) in µm;
  - one ``Plane`` per frame with ``DeltaT`` (s since frame 0, from ``time_s``),
    ``PositionZ`` (µm of focus-drive travel, from ``z_um``; not depth in the
    sample) and ``ExposureTime`` (ms, from ``exposure_ms``) where every frame has
    the key;
  - ``StructuredAnnotations``: a ``MapAnnotation`` (namespace ``deepz-live/run``)
    with the run settings and optics as key/value text for viewers such as OMERO,
    one (``deepz-live/axes``) saying what the z and time values mean, and two
    ``CommentAnnotation``\\ s holding exact JSON: the run metadata
    (``deepz-live/run.json``) and the list of per-frame metadata dicts
    (``deepz-live/frames.json``).

  `read_run_metadata` and `read_frame_metadata` (in `_readers`) read them back.
* Closed after an exception: the same, holding every frame appended so far.
* Process killed before `close()`: no OME-XML; page 0 carries frame 0's JSON, so the
  file still opens (``tifffile.imread`` gives every complete page),
  `read_frame_metadata` still recovers per-frame metadata from the pages and
  `read_run_metadata` the run metadata as it was at the first frame (without the
  ``result`` that `close()` adds).

`OmeZarrWriter` writes OME-Zarr (NGFF 0.5, through ome-writers and zarr-python; the
``zarr`` extra) with one chunk per frame and physical scales in the multiscales
metadata; the run and per-frame metadata go into the group attribute ``deepz-live``
(``{"run": ..., "frames": [...]}``) at `close()`. OME-TIFF is the crash-safe choice:
Zarr metadata is only complete once the writer is closed. `open_writer` picks the
format from the file name (``*.ome.zarr`` → Zarr, anything else → OME-TIFF).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from deepz_live._metadata_format import frame_page_description
from deepz_live.acquisition import _zarr
from deepz_live.acquisition._omexml import frames_ome_xml, ome_pixel_type
from deepz_live.acquisition._output import OutputFile, jsonable, positive_or_none
from deepz_live.acquisition._tiff import PageFile

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

__all__ = ["OmeTiffWriter", "OmeZarrWriter", "open_writer"]


class _FrameWriter(OutputFile):
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
        self.pixel_size_um = positive_or_none(pixel_size_um)
        self.z_step_um = positive_or_none(z_step_um)
        self.run_metadata = dict(run_metadata or {})
        self._frame_metadata: list[dict[str, Any]] = []
        self._closed = False
        self._create_output(overwrite, "output path")

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
        meta = jsonable(dict(frame_metadata or {}))
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
        Its ``devices`` (device -> property -> value, as `build_run_metadata`
        records them), ``camera`` (the camera's label) and ``started`` (ISO 8601)
        also fill OME's Instrument, Channel and AcquisitionDate.
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
        ome_pixel_type(self.dtype)  # a type OME cannot describe fails now, not at close
        self._pages = PageFile(self.path, bigtiff=self._bigtiff)

    def _write(self, frame: np.ndarray, meta: dict[str, Any]) -> None:
        # the page reaches the OS before this returns (see "Crash safety" in _tiff);
        # page 0 also carries the run metadata, for a file that is never closed
        index = self.frames_written
        run = jsonable(self.run_metadata) if index == 0 else None
        self._pages.append(frame, frame_page_description(index, meta, run))

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
        self._pages.finish(self._ome_xml if self._frame_metadata else None)

    def _ome_xml(self) -> bytes:
        return frames_ome_xml(
            self.path,
            axes=self.axes,
            dtype=self.dtype,
            frame_shape=self.frame_shape,
            pixel_size_um=self.pixel_size_um,
            z_step_um=self.z_step_um,
            run_metadata=self.run_metadata,
            frame_metadata=self._frame_metadata,
        )


class OmeZarrWriter(_FrameWriter):
    """Write frames to OME-Zarr (NGFF 0.5) one chunk per frame, as they arrive.

    Same parameters as `OmeTiffWriter` (without ``bigtiff``). Needs the ``zarr``
    extra: ``pip install "deepz-live[zarr]"``. Run and per-frame metadata are stored
    in the group attribute ``deepz-live`` when the writer is closed.
    """

    def _open(self) -> None:
        zyx = self.axes == "ZYX"
        stack_axis = {
            "name": "z" if zyx else "t",
            "count": None,  # grows with every frame
            "type": "space" if zyx else "time",
            "chunk_size": 1,
            **(
                {"unit": "micrometer", "scale": self.z_step_um}
                if zyx and self.z_step_um is not None
                else {}
            ),
        }
        self._stream = _zarr.create_stream(
            self.path,
            [stack_axis, *_zarr.plane_dimensions(self.frame_shape, self.pixel_size_um)],
            self.dtype.name,
            overwrite=self._overwrite,
        )

    def _write(self, frame: np.ndarray, meta: dict[str, Any]) -> None:
        self._stream.append(frame)

    def read_frame(self, index: int) -> np.ndarray:
        """Read frame ``index`` back from the store (also while frames are appended).

        Each appended frame is one chunk written before `append` returns.
        """
        if not 0 <= index < self.frames_written:
            raise IndexError(
                f"frame {index} is not in {self.path} ({self.frames_written} written)"
            )
        return _zarr.read_frame(self.path, index)

    def _finish(self) -> None:
        self._stream.close()
        _zarr.write_attribute(
            self.path,
            {"run": jsonable(self.run_metadata), "frames": self._frame_metadata},
        )


def open_writer(path: str | Path, **kwargs: Any) -> OmeTiffWriter | OmeZarrWriter:
    """An `OmeZarrWriter` for ``*.zarr`` paths, else an `OmeTiffWriter`.

    Keyword arguments are those of the writers; ``bigtiff`` is ignored for Zarr.
    """
    if _zarr.is_zarr(path):
        kwargs.pop("bigtiff", None)
        return OmeZarrWriter(path, **kwargs)
    return OmeTiffWriter(path, **kwargs)
