"""Live and offline refocusing: where acquisition meets inference.

`RefocuserProcessor` adapts an `inference.Refocuser` to acquisition's
`FrameProcessor` protocol, so that `acquisition.LiveSession` can refocus every frame
of a time-lapse while it is taken (`live_refocus`). `refocus_file` does the same for
a raw time-lapse on disk. ``acquisition`` and ``inference`` never import each other;
only this composition root knows both.

Heavy imports (``inference`` pulls in scipy; its backends torch or ONNX Runtime) happen
inside functions, so ``import deepz`` stays quick.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepz_live.acquisition import (
    DEFAULT_PLANE_STEP_UM,
    AcquisitionInterrupted,
    FrameProcessor,
    LiveSession,
    OutputLocationError,
    PlaneError,
    check_planes,
    default_planes,
    default_volume_path,
    microscope_optics,
    open_volume_writer,
    parse_planes,
    read_frame_metadata,
    read_run_metadata,
)
from deepz_live.inference import LIVE_MODEL_NAME

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from deepz_live.acquisition import Microscope, Policy
    from deepz_live.inference import ModelInfo, Refocuser

__all__ = [
    "DEFAULT_PLANE_STEP_UM",
    "RefocusFileSummary",
    "RefocuserProcessor",
    "default_planes",
    "live_refocus",
    "parse_planes",
    "refocus_file",
]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class RefocuserProcessor:
    """A Deep-Z model as acquisition's `FrameProcessor`: frame → volume.

    The model's description is read (and the planes checked against its range) at
    construction, in the calling thread; the network itself is loaded in `setup`, on
    the session's worker thread, which then owns it (and its GPU context).

    Parameters
    ----------
    model : str or Path
        A bundled model name (default `LIVE_MODEL_NAME`) or a model file.
    planes_um : sequence of float, optional
        Planes of every volume, µm from the frame's focus; default
        `default_planes` of the model's range.
    backend, device : str
        As for `inference.Refocuser` (``"auto"``, ``"cpu"``...).
    threads : int, optional
        CPU threads for the backend.
    allow_mismatch : bool
        Refocus even when the microscope's pixel size, NA or wavelength differ from
        the model's (a warning, recorded in the volume metadata). By default that is
        an error before any frame is taken.
    warm_up : bool
        Refocus one blank frame in `setup`, so that the first real frame does not pay
        for first-call allocations (the latency figures then mean something).
    **refocuser_options
        Passed on to `inference.Refocuser` (e.g. ``batch_size``, ``precision``).

    Raises
    ------
    inference.ModelFileError
        No such model.
    inference.InferenceError
        Planes outside the model's trained range.
    """

    def __init__(
        self,
        model: str | Path = LIVE_MODEL_NAME,
        planes_um: Sequence[float] | None = None,
        *,
        backend: str = "auto",
        device: str = "cpu",
        threads: int | None = None,
        allow_mismatch: bool = False,
        warm_up: bool = True,
        **refocuser_options: Any,
    ) -> None:
        from deepz_live.inference import (
            InferenceError,
            read_model_info,
            resolve_model_path,
        )

        self.model = model
        self.model_path = resolve_model_path(model)
        self.info: ModelInfo = read_model_info(self.model_path)
        if planes_um is None:
            planes_um = default_planes(self.info.dz_range_um)
        try:
            self._planes = check_planes(
                np.atleast_1d(np.asarray(planes_um, float)),
                self.info.dz_range_um,
                model=f"model {self.info.name!r}",
            )
        except (PlaneError, ValueError) as exc:
            raise InferenceError(f"Planes: {exc}") from None
        self.backend = backend
        self.device = device
        self.threads = threads
        self.allow_mismatch = allow_mismatch
        self.warm_up = warm_up
        self.refocuser_options = refocuser_options
        self.sha256 = _sha256(self.model_path)
        self.mismatches: list[str] = []
        self.refocuser: Refocuser | None = None

    @property
    def planes_um(self) -> tuple[float, ...]:
        """Planes of every volume (µm from the frame's focus)."""
        return self._planes

    def check_microscope(
        self,
        pixel_size_um: float | None,
        *,
        na: float | None = None,
        emission_wavelength_um: float | None = None,
    ) -> list[str]:
        """Compare the microscope with the model; raise on a mismatch unless allowed.

        Parameters
        ----------
        pixel_size_um : float or None
            Sample-plane pixel size of the frames (None: not calibrated, not checked).
        na, emission_wavelength_um : float, optional
            The objective's NA and the emission wavelength, when known.

        Returns
        -------
        list of str
            The mismatches (empty when the model fits); warned about when allowed.

        Raises
        ------
        inference.ModelFileError
            A mismatch, and ``allow_mismatch`` is False.
        """
        import warnings

        from deepz_live.inference import (
            ModelFileError,
            ModelMismatchWarning,
            check_compatibility,
        )

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ModelMismatchWarning)
            messages = check_compatibility(
                self.info,
                pixel_size_um=pixel_size_um,
                wavelength_um=emission_wavelength_um,
                na=na,
            )
        self.mismatches = messages
        if messages and not self.allow_mismatch:
            raise ModelFileError(
                f"Model {self.info.name!r} does not fit this microscope: "
                + "; ".join(messages)
                + ". To refocus anyway (results will be wrong by that much), pass "
                "--allow-model-mismatch (allow_model_mismatch=True)."
            )
        for message in messages:
            warnings.warn(message, ModelMismatchWarning, stacklevel=2)
        return messages

    def setup(
        self, frame_shape: tuple[int, int], dtype: np.dtype, metadata: dict[str, Any]
    ) -> None:
        """Check the microscope, load the network (on this thread), warm it up."""
        from deepz_live.inference import Refocuser

        self.check_microscope(
            metadata.get("pixel_size_um"),
            na=metadata.get("na"),
            emission_wavelength_um=metadata.get("emission_wavelength_um"),
        )
        self.refocuser = Refocuser(
            self.model,
            backend=self.backend,
            device=self.device,
            threads=self.threads,
            **self.refocuser_options,
        )
        if self.warm_up:
            self.refocuser.refocus(np.zeros(frame_shape, dtype), self._planes)

    def process(self, frame: np.ndarray) -> np.ndarray:
        """Refocus one frame to ``planes_um``: ``(planes, Y, X)`` float32."""
        if self.refocuser is None:
            raise RuntimeError("RefocuserProcessor.setup() was not called")
        return self.refocuser.refocus(frame, self._planes)

    def close(self) -> None:
        """Drop the network (and what it holds on the device)."""
        self.refocuser = None

    def describe(self) -> dict[str, Any]:
        """The model's identity and the refocusing settings, for file metadata."""
        refocuser = self.refocuser
        return {
            "kind": "deepz.RefocuserProcessor",
            "model": self.info.name,
            "model_file": str(self.model_path),
            "model_sha256": self.sha256,
            "model_created": self.info.created,
            "model_pixel_size_um": self.info.pixel_size_um,
            "model_wavelength_um": self.info.wavelength_um,
            "model_na": self.info.na,
            "dz_range_um": self.info.dz_range_um,
            "backend": self.backend if refocuser is None else refocuser.backend,
            # why backend "auto" left TensorRT for torch (None: it did not)
            "backend_fallback": getattr(refocuser, "backend_fallback", None),
            "device": self.device if refocuser is None else str(refocuser.device),
            "planes_um": list(self._planes),
            "model_mismatch": list(self.mismatches),
        }

    def __repr__(self) -> str:
        return (
            f"RefocuserProcessor({self.info.name!r}, planes={len(self._planes)}, "
            f"backend={self.backend!r})"
        )


def _volumes_path(save_volumes: bool | str | Path, raw: str | Path) -> Path | None:
    if save_volumes is True:
        return default_volume_path(raw)
    if save_volumes is False or save_volumes is None:
        return None
    return Path(save_volumes)


def live_refocus(
    scope: Microscope,
    *,
    frames: int,
    out: str | Path,
    model: str | Path | FrameProcessor = LIVE_MODEL_NAME,
    planes_um: Sequence[float] | str | None = None,
    policy: Policy = "latest",
    save_volumes: bool | str | Path = False,
    interval_ms: float = 0.0,
    exposure_ms: float = 10.0,
    led_intensity: float | None = None,
    overwrite: bool = False,
    on_volume: Callable[[int, np.ndarray], object] | None = None,
    backend: str = "auto",
    device: str = "cpu",
    allow_model_mismatch: bool = False,
    max_frames_in_memory: int = 16,
    start: bool = True,
) -> LiveSession:
    """Run a time-lapse and refocus its frames into volumes while they are taken.

    Returns a started `acquisition.LiveSession` at once: iterate over it, pass
    ``on_volume``, or `LiveSession.wait` for the summary. Use it as a context manager
    so that everything is closed (and the run stopped on an error)::

        with deepz.open_microscope() as scope:
            scope.focus_on_specimen()
            with deepz.live_refocus(scope, frames=20, out="worm.ome.tif") as session:
                for index, volume in session:
                    print(index, volume.shape)  # (9, 512, 512) float32

    Parameters
    ----------
    scope : Microscope
        An open microscope.
    frames : int
        Number of frames.
    out : str or Path
        Raw time-lapse file (``*.ome.tif`` or ``*.ome.zarr``).
    model : str, Path or FrameProcessor
        A Deep-Z model (a bundled name or a file), or any `FrameProcessor`.
    planes_um : sequence of float or str, optional
        Planes (µm from the focus), or text for `parse_planes` (``"-8:8:2"``).
        Default: every 2 µm within ±80 % of the model's range.
    policy : {"latest", "all"}
        ``latest`` (live preview: the newest frame, others skipped and counted) or
        ``all`` (every frame refocused, catching up from the raw file).
    save_volumes : bool, str or Path
        True saves the volumes next to the raw file (``*.volumes.ome.tif``); a path
        saves them there (``*.ome.tif`` or ``*.ome.zarr``).
    interval_ms, exposure_ms, led_intensity, overwrite
        As for `acquisition.acquire_timelapse`.
    on_volume : callable, optional
        ``on_volume(index, volume)``, called on the worker thread for every volume.
    backend, device : str
        Refocuser backend and device (ignored for a `FrameProcessor`).
    allow_model_mismatch : bool
        Refocus even if the model was trained at another pixel size, NA or
        wavelength than this microscope's (otherwise an error, before any frame).
    max_frames_in_memory : int
        ``all``: frames held in memory for the worker; the others are read back.
    start : bool
        Start at once (default); False returns the session to start later.

    Returns
    -------
    LiveSession

    Raises
    ------
    inference.InferenceError
        Unknown model, planes outside its range, or (unless allowed) a model that
        does not fit the microscope.
    AcquisitionError, OutputLocationError
        As for `acquisition.acquire_timelapse`.
    """
    if isinstance(planes_um, str):
        planes_um = parse_planes(planes_um)
    if isinstance(model, FrameProcessor):
        processor: FrameProcessor = model
    else:
        refocuser_processor = RefocuserProcessor(
            model,
            planes_um,
            backend=backend,
            device=device,
            allow_mismatch=allow_model_mismatch,
        )
        # fail fast (before files or threads): the same check runs again in setup
        optics = microscope_optics(scope)
        refocuser_processor.check_microscope(
            scope.core.getPixelSizeUm() or None,
            na=optics["na"],
            emission_wavelength_um=optics["emission_wavelength_um"],
        )
        processor = refocuser_processor
    session = LiveSession(
        scope,
        processor,
        frames=frames,
        out=out,
        interval_ms=interval_ms,
        exposure_ms=exposure_ms,
        policy=policy,
        volumes_out=_volumes_path(save_volumes, out),
        led_intensity=led_intensity,
        overwrite=overwrite,
        max_frames_in_memory=max_frames_in_memory,
        on_volume=on_volume,
    )
    if start:
        session.start()
    return session


# -- offline -------------------------------------------------------------------------
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
