"""Offline refocusing: `refocus_file` turns a saved raw time-lapse into volumes.

The raw file is read frame by frame (OME-TIFF written by deepz-live or any other
writer, plain TIFF pages, or OME-Zarr), each frame goes through a `FrameProcessor`
(normally a `RefocuserProcessor`), and the volumes are written as the live pipeline
writes them, with the raw file's timing and the processor's description.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepz_live.acquisition import (
    AcquisitionInterrupted,
    FrameProcessor,
    OutputLocationError,
    default_volume_path,
    open_volume_writer,
    parse_planes,
    read_frame_metadata,
    read_run_metadata,
)
from deepz_live.live._processor import RefocuserProcessor

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["RefocusFileSummary", "refocus_file"]


@dataclass(frozen=True)
class RefocusFileSummary:
    """What `refocus_file` produced.

    Attributes
    ----------
    frames : int
        Frames in the raw file.
    volumes : int
        Volumes written.
    raw : Path
        The raw time-lapse read.
    output : Path
        The volume file.
    volumes_per_s : float or None
        Refocusing rate (reading and writing included).
    planes_um : tuple of float
        Planes of every volume.
    """

    frames: int
    volumes: int
    raw: Path
    output: Path
    volumes_per_s: float | None
    planes_um: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary printed by ``deepz refocus --json``."""
        return {
            "frames": self.frames,
            "volumes": self.volumes,
            "raw": str(self.raw),
            "volume_output": str(self.output),
            "volumes_per_s": (
                None if self.volumes_per_s is None else round(self.volumes_per_s, 4)
            ),
            "planes_um": list(self.planes_um),
        }


class _RawFrames:
    """Frames of a raw time-lapse (OME-TIFF, plain TIFF pages, or OME-Zarr)."""

    def __init__(self, path: Path) -> None:
        import tifffile

        self.path = path
        self._tif: Any = None
        self._zarr: Any = None
        if path.suffix == ".zarr":
            import zarr

            self._zarr = zarr.open_array(str(path / "0"), mode="r")
            if self._zarr.ndim != 3:
                raise OutputLocationError(
                    f"{path} holds a {self._zarr.ndim}-D array; deepz refocus reads "
                    "time-lapses (TYX)."
                )
            self.count = int(self._zarr.shape[0])
            self.shape = tuple(int(n) for n in self._zarr.shape[1:])
            self.dtype = np.dtype(self._zarr.dtype)
            return
        self._tif = tifffile.TiffFile(path)
        pages = self._tif.pages
        self.count = len(pages)
        first = pages.first
        if first.ndim != 2:
            self._tif.close()
            raise OutputLocationError(
                f"{path} holds {first.shape} images; deepz refocus reads single-plane "
                "time-lapses (one 2-D frame per page)."
            )
        self.shape = tuple(int(n) for n in first.shape)
        self.dtype = np.dtype(first.dtype)

    def __getitem__(self, index: int) -> np.ndarray:
        if self._zarr is not None:
            return np.asarray(self._zarr[index])
        page = self._tif.pages[index]
        frame = page.asarray()
        if frame.shape != self.shape:
            raise OutputLocationError(
                f"Frame {index} of {self.path} is {frame.shape}, the first is "
                f"{self.shape}; a time-lapse has frames of one size."
            )
        return frame

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()


def _raw_pixel_size(path: Path, run: dict[str, Any]) -> float | None:
    size = run.get("pixel_size_um")
    if isinstance(size, (int, float)) and size > 0:
        return float(size)
    if path.suffix != ".zarr":
        import tifffile

        with tifffile.TiffFile(path) as tif:
            ome = tif.ome_metadata
        if ome:  # another writer's OME-TIFF: the first image's Pixels
            image = tifffile.xml2dict(ome).get("OME", {}).get("Image", {})
            image = image[0] if isinstance(image, list) else image
            size = image.get("Pixels", {}).get("PhysicalSizeX")
            if isinstance(size, (int, float)) and size > 0:
                return float(size)
    return None


def refocus_file(
    model: str | Path | FrameProcessor,
    raw: str | Path,
    *,
    planes_um: Sequence[float] | str | None = None,
    out: str | Path | None = None,
    backend: str = "auto",
    device: str = "cpu",
    overwrite: bool = False,
    allow_model_mismatch: bool = False,
    progress: Callable[[int, int], object] | None = None,
) -> RefocusFileSummary:
    """Refocus every frame of a saved raw time-lapse into a volume file.

    Reads OME-TIFF (also one a killed process left: page by page), plain TIFF
    pages, or OME-Zarr; writes volumes as `acquisition.LiveSession` does (OME-TIFF or
    OME-Zarr ``TZYX``, plane list and model identity in the metadata).

    Parameters
    ----------
    model : str, Path or FrameProcessor
        A Deep-Z model (a bundled name or a file), or any `FrameProcessor`.
    raw : str or Path
        The raw time-lapse.
    planes_um : sequence of float or str, optional
        Planes (µm) or `parse_planes` text; default as in `live_refocus`.
    out : str or Path, optional
        The volume file; default `acquisition.default_volume_path` of ``raw``.
    backend, device : str
        Refocuser backend and device.
    overwrite : bool
        Replace an existing volume file.
    allow_model_mismatch : bool
        Refocus even if the file's pixel size differs from the model's.
    progress : callable, optional
        ``progress(done, total)`` after every frame.

    Returns
    -------
    RefocusFileSummary

    Raises
    ------
    AcquisitionInterrupted
        Ctrl-C; the volumes so far are saved.
    """
    raw_path = Path(raw).expanduser().absolute()
    if not raw_path.exists():
        raise OutputLocationError(
            f"{raw_path} does not exist; give the raw time-lapse written by deepz "
            "acquire (*.ome.tif or *.ome.zarr)."
        )
    if isinstance(planes_um, str):
        planes_um = parse_planes(planes_um)
    try:
        run = read_run_metadata(raw_path)
    except Exception:  # a foreign or unfinished file: no run metadata
        run = {}
    if run.get("kind") == "zstack":
        raise OutputLocationError(
            f"{raw_path} is a z-stack; deepz refocus turns the frames of a "
            "time-lapse into volumes."
        )
    pixel_size = _raw_pixel_size(raw_path, run)
    if isinstance(model, FrameProcessor):
        processor: FrameProcessor = model
    else:
        processor = RefocuserProcessor(
            model,
            planes_um,
            backend=backend,
            device=device,
            allow_mismatch=allow_model_mismatch,
            warm_up=False,
        )
    output = (default_volume_path(raw_path) if out is None else Path(out)).absolute()
    if output == raw_path:
        raise OutputLocationError(
            f"The volume output {output} is the raw file; choose another --out."
        )
    frames = _RawFrames(raw_path)
    try:
        try:
            frame_metadata = read_frame_metadata(raw_path)
        except Exception:
            frame_metadata = []
        devices = run.get("devices") or {}
        optics = devices.get("Optics") or {}
        processor.setup(
            frames.shape,  # type: ignore[arg-type]
            frames.dtype,
            {
                "version": 1,
                "pixel_size_um": pixel_size,
                "na": _float_or_none(optics.get("NA")),
                "emission_wavelength_um": _scaled(
                    optics.get("EmissionWavelength_nm"), 1e-3
                ),
                "frames": frames.count,
                "policy": "all",
            },
        )
        try:
            return _refocus_frames(
                processor,
                frames,
                frame_metadata,
                raw_path,
                output,
                pixel_size,
                overwrite,
                progress,
            )
        finally:
            processor.close()
    finally:
        frames.close()


def _refocus_frames(
    processor: FrameProcessor,
    frames: _RawFrames,
    frame_metadata: list[dict[str, Any]],
    raw_path: Path,
    output: Path,
    pixel_size: float | None,
    overwrite: bool,
    progress: Callable[[int, int], object] | None,
) -> RefocusFileSummary:
    planes = tuple(float(p) for p in processor.planes_um)
    writer = open_volume_writer(
        output,
        planes_um=planes,
        frame_shape=frames.shape,
        pixel_size_um=pixel_size,
        run_metadata={
            "kind": "offline-volumes",
            "raw_output": str(raw_path),
            "processor": processor.describe(),
            "pixel_size_um": pixel_size,
        },
        overwrite=overwrite,
    )
    started = time.perf_counter()
    done = 0
    try:
        for index in range(frames.count):
            volume = processor.process(frames[index])
            record = frame_metadata[index] if index < len(frame_metadata) else {}
            writer.append(
                volume,
                {
                    "frame_index": index,
                    **{k: record[k] for k in ("time_s", "z_um") if k in record},
                },
            )
            done += 1
            if progress is not None:
                progress(done, frames.count)
    except KeyboardInterrupt:
        writer.close()
        raise AcquisitionInterrupted(
            f"Refocusing interrupted after {done} of {frames.count} frames; the "
            f"{done} volumes made are saved in {output}.",
            frames_saved=done,
            output=output if done else None,
        ) from None
    finally:
        writer.close()
    elapsed = time.perf_counter() - started
    return RefocusFileSummary(
        frames=frames.count,
        volumes=done,
        raw=raw_path,
        output=output,
        volumes_per_s=done / elapsed if done and elapsed > 0 else None,
        planes_um=planes,
    )


def _float_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _scaled(value: Any, scale: float) -> float | None:
    number = _float_or_none(value)
    return None if number is None else number * scale
