"""Incremental writers of refocused volumes (``TZYX``, float32): OME-TIFF, OME-Zarr.

The live pipeline turns every raw frame into a volume of refocused planes; these
writers put each volume on disk the moment it is appended, the way the raw-frame
writers (`_frames`) do for frames. `OmeTiffVolumeWriter` writes one page per plane
through the crash-safe `_tiff.PageFile` and its OME-XML header on `close()`
(`_omexml.volumes_ome_xml`); `OmeZarrVolumeWriter` writes one chunk per plane.
`open_volume_writer` picks the format from the file name, and `read_volume_metadata`
(in `_readers`) reads back what either stored.

In a TIFF that was never closed, the first page of every volume carries that volume's
metadata as JSON (``{"deepz_volume": t, "plane": 0, ...}``); the other pages carry
only their indices (`deepz_live._metadata_format` owns this layout).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepz_live._metadata_format import volume_page_description
from deepz_live.acquisition import _zarr
from deepz_live.acquisition._omexml import volumes_ome_xml
from deepz_live.acquisition._output import OutputFile, jsonable, positive_or_none
from deepz_live.acquisition._planes import check_planes
from deepz_live.acquisition._tiff import PageFile

__all__ = [
    "INSTRUMENT_METADATA_KEYS",
    "OmeTiffVolumeWriter",
    "OmeZarrVolumeWriter",
    "open_volume_writer",
]

INSTRUMENT_METADATA_KEYS = ("devices", "camera", "focus_device")
"""Keys of a raw file's run metadata that describe the microscope: copied into a
volume file's run metadata, they give it the same OME Instrument and Channel."""


class _VolumeWriter(OutputFile):
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
        planes = check_planes(np.atleast_1d(np.asarray(planes_um, dtype=np.float64)))
        if len(frame_shape) != 2 or min(frame_shape) < 1:
            raise ValueError(f"frame_shape must be (height, width), got {frame_shape}")
        self.path = Path(path)
        self.planes_um = planes
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        self.pixel_size_um = positive_or_none(pixel_size_um)
        self.z_step_um = _uniform_step(self.planes_um)
        self.run_metadata = {**(run_metadata or {}), "planes_um": list(self.planes_um)}
        self._volume_metadata: list[dict[str, Any]] = []
        self._closed = False
        self._create_output(overwrite, "volume output")

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
        meta = jsonable(dict(volume_metadata or {}))
        self._write(volume.astype(np.float32, copy=False), meta)
        self._volume_metadata.append(meta)


class OmeTiffVolumeWriter(_VolumeWriter):
    """Write refocused volumes to an OME-TIFF (axes ``TZYX``, float32), as they come.

    Each volume is written as one page per plane the moment it is appended (crash
    safe, like `OmeTiffWriter`). On `close()` page 0 gets the OME-XML: ``TZYX``
    sizes, ``PhysicalSizeX/Y``, ``PhysicalSizeZ`` (the plane step, when the planes
    are evenly spaced), per-plane ``DeltaT`` (s since the first volume's frame)
    and ``PositionZ`` (frame focus + plane offset, µm of focus-drive travel) where
    known; ``Instrument`` (``Objective``, ``Detector``), the ``Channel``'s emission
    wavelength and detector settings where ``run_metadata`` records the devices
    (see below); a ``MapAnnotation`` (namespace ``deepz-live/volumes``), one
    (``deepz-live/axes``) saying what the planes and z values mean, and exact JSON
    in ``CommentAnnotation``\\ s: the run metadata with the plane list and the
    model's identity (``deepz-live/volumes-run.json``) and one dict per volume
    (``deepz-live/volumes.json``). `read_volume_metadata` reads them back, also
    from a file that was never closed.

    Parameters
    ----------
    path : str or Path
        Output file, conventionally ``*.volumes.ome.tif``. Its folder must exist.
    planes_um : sequence of float
        The refocusing distances of the planes: µm of focus-drive travel from the
        frame's focal plane (plane k is what a scan would record with the focus
        drive ``planes_um[k]`` further), not depth in the sample.
    frame_shape : tuple of int
        ``(height, width)`` of every plane.
    pixel_size_um : float or None
        Sample-plane pixel size in µm.
    run_metadata : dict, optional
        Anything JSON-serialisable (model identity, settings...). ``planes_um`` is
        added. Copy ``devices``, ``camera`` and ``started`` from the raw run's
        metadata (`build_run_metadata`) to get OME's Instrument, Channel and
        AcquisitionDate too; without them those are left out.
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
        self._pages = PageFile(self.path, bigtiff=self._bigtiff)

    def _write(self, volume: np.ndarray, meta: dict[str, Any]) -> None:
        index = self.volumes_written
        for plane, image in enumerate(volume):
            description = volume_page_description(
                index, plane, meta if plane == 0 else None
            )
            self._pages.append(image, description)

    def _finish(self) -> None:
        self._pages.finish(self._ome_xml if self._volume_metadata else None)

    def _ome_xml(self) -> bytes:
        return volumes_ome_xml(
            self.path,
            planes_um=self.planes_um,
            frame_shape=self.frame_shape,
            pixel_size_um=self.pixel_size_um,
            z_step_um=self.z_step_um,
            run_metadata=self.run_metadata,
            volume_metadata=self._volume_metadata,
        )


class OmeZarrVolumeWriter(_VolumeWriter):
    """Write refocused volumes to OME-Zarr (NGFF 0.5, axes ``tzyx``, float32).

    Same parameters as `OmeTiffVolumeWriter` (without ``bigtiff``); one chunk per
    plane, z scale = the plane step when the planes are evenly spaced. Run and
    per-volume metadata go into the group attribute ``deepz-live``
    (``{"run": ..., "volumes": [...]}``) at `close()`. Needs the ``zarr`` extra.
    """

    def _open(self) -> None:
        z_scale = (
            {"unit": "micrometer", "scale": self.z_step_um}
            if self.z_step_um is not None
            else {"unit": "micrometer"}
        )
        dims: list[dict[str, Any]] = [
            {"name": "t", "count": None, "type": "time", "chunk_size": 1},
            {
                "name": "z",
                "count": len(self.planes_um),
                "type": "space",
                "chunk_size": 1,
                **z_scale,
            },
            *_zarr.plane_dimensions(self.frame_shape, self.pixel_size_um),
        ]
        self._stream = _zarr.create_stream(
            self.path, dims, "float32", overwrite=self._overwrite
        )

    def _write(self, volume: np.ndarray, meta: dict[str, Any]) -> None:
        for image in volume:
            self._stream.append(image)

    def _finish(self) -> None:
        self._stream.close()
        _zarr.write_attribute(
            self.path,
            {"run": jsonable(self.run_metadata), "volumes": self._volume_metadata},
        )


def open_volume_writer(
    path: str | Path, **kwargs: Any
) -> OmeTiffVolumeWriter | OmeZarrVolumeWriter:
    """An `OmeZarrVolumeWriter` for ``*.zarr`` paths, else an `OmeTiffVolumeWriter`.

    Keyword arguments are those of the writers; ``bigtiff`` is ignored for Zarr.
    """
    if _zarr.is_zarr(path):
        kwargs.pop("bigtiff", None)
        return OmeZarrVolumeWriter(path, **kwargs)
    return OmeTiffVolumeWriter(path, **kwargs)


def _uniform_step(planes: tuple[float, ...]) -> float | None:
    """The plane spacing when the planes are evenly spaced and increasing."""
    if len(planes) < 2:
        return None
    steps = np.diff(planes)
    if steps[0] > 0 and np.allclose(steps, steps[0], rtol=1e-6, atol=1e-9):
        return float(round(steps[0], 9))
    return None
