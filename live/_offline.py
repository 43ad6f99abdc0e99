"""Offline refocusing: `refocus_file` turns a saved raw time-lapse into volumes.

The raw file is read frame by frame (OME-TIFF written by deepz-live or any other
writer, plain TIFF pages, or OME-Zarr), each frame goes through a `FrameProcessor`
(normally a `RefocuserProcessor`), and the volumes are written as the live pipeline
writes them, with the raw file's timing and the processor's description.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepz_live.acquisition import (
    INSTRUMENT_METADATA_KEYS,
    AcquisitionInterrupted,
    DeepzError,
    FrameProcessor,
    OutputLocationError,
    default_volume_path,
    open_volume_writer,
    parse_planes,
    read_frame_metadata,
    read_run_metadata,
    read_volume_metadata,
)
from deepz_live.inference import InferenceError, ModelMismatchWarning
from deepz_live.live._processor import RefocuserProcessor

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = ["RawFileError", "RefocusFileSummary", "refocus_file"]


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
    pixel_size_um : float or None
        The frames' pixel size as refocused (None: unknown, refocused anyway).
    pixel_size_source : str
        Where it came from: ``"raw file"``, ``"stated ..."`` or ``"unknown ..."``.
    """

    frames: int
    volumes: int
    raw: Path
    output: Path
    volumes_per_s: float | None
    planes_um: tuple[float, ...]
    pixel_size_um: float | None = None
    pixel_size_source: str = "raw file"

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
            "pixel_size_um": self.pixel_size_um,
            "pixel_size_source": self.pixel_size_source,
        }


class RawFileError(OutputLocationError):
    """The raw time-lapse cannot be refocused: missing, empty, truncated, damaged,
    or not a single-plane time-lapse. (An `OutputLocationError`, as it was before
    it had a name of its own.)"""


class _RawFrames:
    """Frames of a raw time-lapse (OME-TIFF, plain TIFF pages, or OME-Zarr).

    Opening checks what can be checked without reading pixels (a readable file,
    2-D frames, at least one); a frame that cannot be read is a `RawFileError`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tif: Any = None
        self._zarr: Any = None
        if path.suffix == ".zarr":
            self._open_zarr(path)
        elif path.is_dir():
            raise RawFileError(
                f"{path} is a folder; give the raw time-lapse file (*.ome.tif) or "
                "an OME-Zarr folder (*.ome.zarr)."
            )
        else:
            self._open_tiff(path)

    def _open_zarr(self, path: Path) -> None:
        try:
            import zarr
        except ImportError:
            raise RawFileError(
                f"Reading OME-Zarr ({path.name}) needs the zarr extra: "
                'pip install "deepz-live[zarr]".'
            ) from None
        try:
            self._zarr = zarr.open_array(str(path / "0"), mode="r")
        except Exception as exc:  # zarr's own errors, OSError...
            raise RawFileError(
                f"{path} is not a readable OME-Zarr time-lapse (no array '0', or "
                f"damaged): {_one_line(exc)}"
            ) from exc
        if self._zarr.ndim != 3:
            raise RawFileError(
                f"{path} holds a {self._zarr.ndim}-D array; deepz refocus reads "
                "time-lapses (TYX)."
            )
        self.count = int(self._zarr.shape[0])
        self.shape = tuple(int(n) for n in self._zarr.shape[1:])
        self.dtype = np.dtype(self._zarr.dtype)
        if self.count == 0:
            raise RawFileError(f"{path} holds no frames.")

    def _open_tiff(self, path: Path) -> None:
        import tifffile

        if path.stat().st_size == 0:
            raise RawFileError(
                f"{path} is empty (0 bytes): no frame was ever written to it."
            )
        try:
            self._tif = tifffile.TiffFile(path)
            pages = self._tif.pages
            self.count = len(pages)
            first = pages.first if self.count else None
        except Exception as exc:  # tifffile raises many kinds for damaged files
            self.close()
            if path.suffix == ".safetensors":
                raise RawFileError(
                    f"{path} is a model file, not a time-lapse: give the model "
                    "first, then the raw file (deepz refocus MODEL RAW)."
                ) from exc
            raise RawFileError(
                f"{path} cannot be read as a TIFF time-lapse (truncated, damaged, or "
                f"not a TIFF file): {_one_line(exc)}"
            ) from exc
        if first is None:
            self.close()
            raise RawFileError(
                f"{path} holds no complete frame (a TIFF header only: truncated, or "
                "the run stopped before its first frame)."
            )
        if first.ndim != 2:
            self.close()
            raise RawFileError(
                f"{path} holds {first.shape} images; deepz refocus reads single-plane "
                "time-lapses (one 2-D frame per page)."
            )
        self.shape = tuple(int(n) for n in first.shape)
        self.dtype = np.dtype(first.dtype)
        axes = self._tif.series[0].axes if self._tif.series else ""
        if "Z" in axes:
            self.close()
            raise RawFileError(
                f"{path} has a z axis ({axes}): it holds refocused volumes or a "
                "z-stack, not a single-plane time-lapse; give the raw time-lapse."
            )

    @property
    def is_tiff(self) -> bool:
        """A TIFF file (not OME-Zarr)."""
        return self._tif is not None

    @property
    def ome_metadata(self) -> str | None:
        """The OME-XML of a TIFF (None for OME-Zarr or plain TIFF)."""
        return None if self._tif is None else self._tif.ome_metadata

    @property
    def imagej_pixel_size_um(self) -> float | None:
        """The pixel size an ImageJ TIFF records (XResolution in pixels per µm)."""
        if self._tif is None or not self._tif.is_imagej:
            return None
        unit = (self._tif.imagej_metadata or {}).get("unit", "")
        resolution = self._tif.pages.first.tags.get("XResolution")
        if unit not in ("micron", "um", "µm", "\\u00B5m") or resolution is None:
            return None
        numerator, denominator = resolution.value
        return _positive_or_none(denominator / numerator if numerator else None)

    def __getitem__(self, index: int) -> np.ndarray:
        try:
            if self._zarr is not None:
                return np.asarray(self._zarr[index])
            frame = self._tif.pages[index].asarray()
        except Exception as exc:
            raise RawFileError(
                f"frame {index} of {self.path} cannot be read (the file is truncated "
                f"or damaged): {_one_line(exc)}"
            ) from exc
        if frame.shape != self.shape:
            raise RawFileError(
                f"frame {index} of {self.path} is {frame.shape}, the first is "
                f"{self.shape}; a time-lapse has frames of one size."
            )
        return frame

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """No tifffile log lines about a damaged raw file: our errors say it in one
    line, and a truncated file's complete frames are refocused."""
    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _raw_pixel_size(frames: _RawFrames, run: dict[str, Any]) -> float | None:
    """The pixel size the raw file records: deepz-live's run metadata, else another
    writer's OME-XML or ImageJ calibration; None when it records none."""
    size = _positive_or_none(run.get("pixel_size_um"))
    if size is not None:
        return size
    import tifffile

    try:
        ome = frames.ome_metadata
        if ome:  # another writer's OME-TIFF: the first image's Pixels
            image = tifffile.xml2dict(ome).get("OME", {}).get("Image", {})
            image = image[0] if isinstance(image, list) else image
            size = _positive_or_none(image.get("Pixels", {}).get("PhysicalSizeX"))
        return size if size is not None else frames.imagej_pixel_size_um
    except Exception:  # malformed metadata from elsewhere: no pixel size
        return None


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (hard or symbolic links included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet)
        return False


def refocus_file(
    model: str | Path | FrameProcessor,
    raw: str | Path,
    *,
    planes_um: Sequence[float] | str | None = None,
    out: str | Path | None = None,
    backend: str = "auto",
    device: str = "cpu",
    overwrite: bool = False,
    pixel_size_um: float | None = None,
    allow_model_mismatch: bool = False,
    progress: Callable[[int, int], object] | None = None,
) -> RefocusFileSummary:
    """Refocus every frame of a saved raw time-lapse into a volume file.

    Reads OME-TIFF (also one a killed process left: page by page), plain TIFF
    pages, or OME-Zarr; writes volumes as `acquisition.LiveSession` does (OME-TIFF or
    OME-Zarr ``TZYX``, plane list and model identity in the metadata).

    A Deep-Z model fits one pixel size, so the frames' pixel size is checked against
    the model's: the one the file records (deepz-live run metadata, OME-XML or ImageJ
    calibration; a killed run's file keeps its run metadata in its first page), or
    ``pixel_size_um`` when given. Frames whose pixel size is unknown (another
    program's uncalibrated TIFF, a file from before killed runs kept their run
    metadata) are refused unless ``pixel_size_um`` states it or
    ``allow_model_mismatch`` accepts refocusing them as if it were the model's; the
    volume file records which (``pixel_size_source``).

    Nothing is written until the first frame has been refocused, and the volume file
    can never be the raw file or the model file (compared as files, so hard and
    symbolic links count).

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
    pixel_size_um : float, optional
        The frames' sample-plane pixel size (µm); replaces the one the file records
        (both are kept in the volume file's metadata).
    allow_model_mismatch : bool
        Refocus even if the frames' pixel size (or NA, wavelength) differs from
        the model's, or is unknown.
    progress : callable, optional
        ``progress(done, total)`` after every frame.

    Returns
    -------
    RefocusFileSummary

    Raises
    ------
    RawFileError
        The raw file is missing, empty, truncated, damaged or not a single-plane
        time-lapse (an `OutputLocationError`).
    OutputLocationError
        The volume file is the raw or model file, exists (without ``overwrite``)
        or cannot be created.
    inference.InferenceError
        The model cannot be used: unknown, broken, planes outside its range, a
        pixel size that differs from its or is unknown (`ModelFileError`), or a
        frame it cannot refocus (NaN pixels, float data not in camera counts). A
        frame after the first: the volumes made so far are saved, and the message
        says where.
    ValueError
        ``pixel_size_um`` is not a positive number.
    AcquisitionInterrupted
        Ctrl-C; the volumes so far are saved.
    """
    raw_path = Path(raw).expanduser().absolute()
    if not raw_path.exists():
        raise RawFileError(
            f"{raw_path} does not exist; give the raw time-lapse written by deepz "
            "acquire (*.ome.tif or *.ome.zarr)."
        )
    stated = _positive_or_none(pixel_size_um)
    if pixel_size_um is not None and stated is None:
        raise ValueError(
            f"pixel_size_um must be a positive number (µm), got {pixel_size_um!r}."
        )
    output = (
        default_volume_path(raw_path) if out is None else Path(out).expanduser()
    ).absolute()
    # before anything is opened for writing: a link to the raw file is the raw file
    if output == raw_path or _same_file(output, raw_path):
        raise OutputLocationError(
            f"The volume output {output} is the raw file {raw_path}"
            + ("" if output == raw_path else " (a hard or symbolic link to it)")
            + "; writing there would destroy the recording. Choose another --out."
        )
    if isinstance(planes_um, str):
        planes_um = parse_planes(planes_um)
    # a damaged file is reported once, by the errors below, not by tifffile's log
    with _quiet_tifffile():
        frames = _RawFrames(raw_path)
        try:
            return _refocus_opened(
                model,
                frames,
                output,
                planes_um=planes_um,
                backend=backend,
                device=device,
                overwrite=overwrite,
                stated_pixel_size=stated,
                allow_model_mismatch=allow_model_mismatch,
                progress=progress,
            )
        finally:
            frames.close()


def _refocus_opened(
    model: str | Path | FrameProcessor,
    frames: _RawFrames,
    output: Path,
    *,
    planes_um: Sequence[float] | None,
    backend: str,
    device: str,
    overwrite: bool,
    stated_pixel_size: float | None,
    allow_model_mismatch: bool,
    progress: Callable[[int, int], object] | None,
) -> RefocusFileSummary:
    raw_path = frames.path
    try:
        run = read_run_metadata(raw_path)
    except Exception:  # a foreign or unfinished file: no run metadata
        run = {}
    if run.get("kind") == "zstack":
        raise RawFileError(
            f"{raw_path} is a z-stack; deepz refocus turns the frames of a "
            "time-lapse into volumes."
        )
    if frames.is_tiff and _is_volume_file(raw_path):  # Zarr: 4-D, refused above
        raise RawFileError(
            f"{raw_path} holds refocused volumes, not raw frames; give the raw "
            "time-lapse they were made from."
        )
    recorded = _raw_pixel_size(frames, run)
    pixel_size = stated_pixel_size if stated_pixel_size is not None else recorded
    devices = run.get("devices") or {}
    optics = devices.get("Optics") or {}
    na = _float_or_none(optics.get("NA"))
    wavelength = _scaled(optics.get("EmissionWavelength_nm"), 1e-3)
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
            require_pixel_size=True,
        )
    if isinstance(processor, RefocuserProcessor):
        if _same_file(output, processor.model_path):
            raise OutputLocationError(
                f"The volume output {output} is the model file "
                f"{processor.model_path}; writing there would destroy the model. "
                "Choose another --out."
            )
        # fail fast, before the network is loaded (setup checks again, quietly)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ModelMismatchWarning)
            processor.check_microscope(
                pixel_size,
                na=na,
                emission_wavelength_um=wavelength,
                require_pixel_size=True,
            )
    if stated_pixel_size is not None:
        source = "stated (pixel_size_um, --pixel-size-um)"
        if recorded is not None and not math.isclose(
            recorded, stated_pixel_size, rel_tol=1e-3
        ):
            # the model is checked against the stated size: a mismatch warning
            warnings.warn(
                f"the stated pixel size {stated_pixel_size:g} µm replaces the "
                f"{recorded:g} µm that {raw_path.name} records",
                ModelMismatchWarning,
                stacklevel=3,
            )
    elif recorded is not None:
        source = "raw file"
    elif isinstance(processor, RefocuserProcessor):
        source = (
            f"unknown; refocused as if it were model {processor.info.name!r}'s "
            f"{processor.info.pixel_size_um:g} µm (allow_model_mismatch)"
        )
    else:
        source = "unknown"
    pixel_metadata: dict[str, Any] = {
        "pixel_size_um": pixel_size,
        "pixel_size_source": source,
    }
    if recorded is not None and recorded != pixel_size:
        pixel_metadata["raw_pixel_size_um"] = recorded
    try:
        frame_metadata = read_frame_metadata(raw_path)
    except Exception:
        frame_metadata = []
    processor.setup(
        frames.shape,  # type: ignore[arg-type]
        frames.dtype,
        {
            "version": 1,
            "pixel_size_um": pixel_size,
            "na": na,
            "emission_wavelength_um": wavelength,
            "frames": frames.count,
            "policy": "all",
        },
    )
    try:
        return _refocus_frames(
            processor,
            frames,
            frame_metadata,
            output,
            {
                **pixel_metadata,
                # the raw run's microscope: OME Instrument and Channel
                **{k: run[k] for k in INSTRUMENT_METADATA_KEYS if k in run},
            },
            overwrite,
            progress,
        )
    finally:
        processor.close()


def _is_volume_file(path: Path) -> bool:
    """A TIFF volume file: closed (its run metadata) or not (pages naming a plane)."""
    try:
        stored = read_volume_metadata(path)
        return bool(stored["run"] or stored["volumes"])
    except Exception:  # not JSON page descriptions: another writer's TIFF
        return False


def _refocus_frames(
    processor: FrameProcessor,
    frames: _RawFrames,
    frame_metadata: list[dict[str, Any]],
    output: Path,
    raw_run: dict[str, Any],
    overwrite: bool,
    progress: Callable[[int, int], object] | None,
) -> RefocusFileSummary:
    raw_path = frames.path
    planes = tuple(float(p) for p in processor.planes_um)
    started = time.perf_counter()
    # the first frame before the volume file is opened: a model, frame or setting
    # that cannot work fails here, and an existing file (--overwrite) is not lost
    try:
        first = processor.process(frames[0])
    except KeyboardInterrupt:
        raise AcquisitionInterrupted(
            "Refocusing interrupted before the first volume; nothing was written.",
            frames_saved=0,
            output=None,
        ) from None
    except (DeepzError, InferenceError) as exc:
        exc.args = (f"{_capitalized(exc)} Nothing was written.",)
        raise
    writer = open_volume_writer(
        output,
        planes_um=planes,
        frame_shape=frames.shape,
        pixel_size_um=raw_run["pixel_size_um"],
        run_metadata={
            "kind": "offline-volumes",
            "raw_output": str(raw_path),
            "processor": processor.describe(),
            **raw_run,
        },
        overwrite=overwrite,
    )
    done = 0
    index = 0
    try:
        for index in range(frames.count):
            volume = first if index == 0 else processor.process(frames[index])
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
    except (DeepzError, InferenceError) as exc:
        writer.close()
        # the same exception, so that callers can still tell what went wrong
        exc.args = (
            f"{_capitalized(exc)} Refocusing stopped at frame {index} of "
            f"{frames.count}; the {done} volumes made before it are saved in "
            f"{output}.",
        )
        raise
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
        pixel_size_um=raw_run["pixel_size_um"],
        pixel_size_source=raw_run["pixel_size_source"],
    )


def _capitalized(exc: BaseException) -> str:
    text = _one_line(exc)
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _positive_or_none(value: Any) -> float | None:
    number = _float_or_none(value)
    return number if number is not None and number > 0 else None


def _float_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _scaled(value: Any, scale: float) -> float | None:
    number = _float_or_none(value)
    return None if number is None else number * scale
