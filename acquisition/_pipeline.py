"""Live processing of a time-lapse: raw frames to disk, every frame into a volume.

A `LiveSession` runs a single-plane time-lapse on a `Microscope`, writes every raw
frame losslessly as it arrives, and hands frames to a `FrameProcessor` (in deepz-live,
a Deep-Z refocuser adapted by ``deepz``) that turns each into a volume. Volumes go to
the ``volume_ready`` event, to iterators over the session, and optionally to a volume
file. This layer knows nothing of models: the processor is any object with the
`FrameProcessor` methods.

Threading contract
------------------
A session runs three threads of its own; the caller's thread (a script, or the Qt GUI
thread) only starts, stops, reads `LiveSession.stats` and, when it chooses to, waits.

``deepz-acquisition``: pymmcore-plus's MDA runner, which calls ``frameReady`` here.
    The callback only checks the frame's shape and dtype, appends it to the raw
    writer (one unbuffered page write, well under a millisecond at 512²), records its
    metadata and dose, and hands it on without waiting: to the refocus queue and, if
    anyone listens to ``frame_acquired``, to the events queue. No user code, no
    inference, no lock held by a slow thread runs here, so the camera's rate does not
    depend on the processor. Raw frames are never dropped: a frame that cannot be
    written stops the run (and says why).
``deepz-refocus``: the worker.
    It owns the processor: it calls `FrameProcessor.setup` before the camera starts
    (so a model that does not fit the microscope costs no light), then `process` for
    each frame it takes, and `close` at the end. Whatever the processor allocates
    there (a CUDA context and stream, engine buffers) belongs to this thread. It also
    writes the volume file, feeds iterators, and emits ``volume_ready``: listeners
    connected without a ``thread`` run here and slow the worker, never the camera.
``deepz-events``: emits ``frame_acquired``, ``stats_updated`` (about 10 times a
    second while running) and the lifecycle events ``run_started``,
    ``acquisition_finished``, and finally ``run_finished`` or ``run_failed``, in
    that order. A listener that raises is logged and does not stop the run.

Queues between them, all bounded:

* ``policy="latest"`` (live preview): one slot. A new frame replaces a frame the
  worker has not taken yet; each replaced frame is counted in ``LiveStats.skipped``.
  The worker always refocuses the newest frame, so latency stays within about two
  processing times however fast the camera is.
* ``policy="all"``: first in, first out; every frame is refocused eventually. At most
  ``max_frames_in_memory`` frames are held in memory; the queue entries of the others
  carry only their index, and the worker reads those frames back from the raw file
  (each page is on disk before the callback returns), during the run or after it.
  Memory stays bounded however long the run and however slow the processor.
* Events: at most 8 ``frame_acquired`` notifications wait; beyond that the oldest is
  dropped and counted (``LiveStats.frame_events_dropped``). Lifecycle events are
  never dropped.
* Iterators (``for index, volume in session``): 4 volumes each. The worker waits for a
  slow iterator: in ``latest`` more frames are skipped, in ``all`` more wait on disk.

GUI use: a Qt panel calls `LiveSession.start` and `LiveSession.stop` from the GUI
thread (neither blocks on the camera or the model) and connects with
``session.events.volume_ready.connect(slot, thread="main")`` (likewise for
``stats_updated``, ``frame_acquired``...), so that its slots run on the GUI thread; it
throttles redraws itself (~30 Hz). It must not call `LiveSession.wait` from the GUI
thread, nor from a listener.

Faults (what a user finds afterwards): a camera error or timeout, a stage error, a
full disk, or a frame of unexpected shape or dtype stops acquiring; every frame
written so far stays in the raw file, which is closed properly (OME-XML) when the disk
allows it and readable in any case. With ``policy="all"`` the worker still refocuses
every frame that was acquired, then the run is reported failed with a message that
says what happened and what is saved where. A processor (model) error or a volume file
that cannot be written stops the whole run at once.
"""

from __future__ import annotations

import errno
import logging
import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np
import useq
from psygnal import Signal, SignalGroup
from pymmcore_plus.mda import FinishReason

from deepz_live.acquisition._errors import (
    AcquisitionError,
    AcquisitionInterrupted,
    DeepzError,
    LiveRunError,
    OutputLocationError,
)
from deepz_live.acquisition._runs import (
    _check_idle,
    _check_timelapse_settings,
    _fps,
    _frame_layout,
    _frame_record,
    _human_bytes,
    _open_writer,
    _prepare_output,
    _run_metadata,
    _set_led_intensity,
    _significant,
)
from deepz_live.acquisition._writers import (
    OmeTiffVolumeWriter,
    OmeTiffWriter,
    OmeZarrVolumeWriter,
    OmeZarrWriter,
    open_volume_writer,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from types import TracebackType

    from typing_extensions import Self

    from deepz_live.acquisition._scope import Microscope

__all__ = [
    "FrameProcessor",
    "LiveEvents",
    "LiveSession",
    "LiveStats",
    "LiveSummary",
    "LiveVolume",
    "Policy",
    "default_volume_path",
    "microscope_optics",
]

_log = logging.getLogger(__name__)

Policy = Literal["latest", "all"]
POLICIES: tuple[str, ...] = ("latest", "all")

SETUP_METADATA_VERSION = 1
OPTICS_DEVICE = "Optics"
"""Label of a device with ``NA`` / ``EmissionWavelength_nm`` (the simulator's)."""

_STATS_PERIOD_S = 0.1
_POLL_S = 0.1
_MAX_PENDING_FRAME_EVENTS = 8
_ITERATOR_QUEUE = 4
_RATE_WINDOW = 64
_LATENCY_WINDOW = 200
_DISK_MARGIN = 1.05
_DISK_FULL = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file size limit was reached",
}


# -- the protocol acquisition and inference meet through ----------------------------
@runtime_checkable
class FrameProcessor(Protocol):
    """What turns a frame into a volume; implemented outside this layer.

    ``deepz`` adapts an `inference.Refocuser` to it (``deepz.RefocuserProcessor``);
    tests use simple stand-ins. All methods are called on the session's worker
    thread, in the order ``setup`` → ``process``... → ``close``.

    Attributes
    ----------
    planes_um : sequence of float
        The planes every volume holds (µm from the frame's focus), in order.
    """

    @property
    def planes_um(self) -> Sequence[float]:
        """Planes of each volume, µm from the frame's focus."""
        ...

    def setup(
        self, frame_shape: tuple[int, int], dtype: np.dtype, metadata: dict[str, Any]
    ) -> None:
        """Prepare for frames of this shape and dtype; raise if they cannot be served.

        Parameters
        ----------
        frame_shape : tuple of int
            ``(height, width)`` of every frame of the run.
        dtype : numpy.dtype
            Pixel type of every frame (uint16 for most cameras).
        metadata : dict
            Version 1: ``version``, ``pixel_size_um`` (µm at the sample, or None),
            ``na`` and ``emission_wavelength_um`` (None when the microscope does not
            say), ``exposure_ms``, ``camera``, ``config``, ``frames``, ``policy``.
        """
        ...

    def process(self, frame: np.ndarray) -> np.ndarray:
        """Turn one ``(Y, X)`` frame into a ``(planes, Y, X)`` float32 volume."""
        ...

    def close(self) -> None:
        """Release what `setup` allocated."""
        ...

    def describe(self) -> dict[str, Any]:
        """Identity for the volume file's metadata (model name, hash, backend...)."""
        ...


# -- what a session reports ----------------------------------------------------------
class LiveVolume(NamedTuple):
    """One refocused volume: the index of its frame and the ``(Z, Y, X)`` array."""

    index: int
    volume: np.ndarray


class LiveEvents(SignalGroup):
    """Events of a `LiveSession` (psygnal); see the module docstring for threads.

    Attributes
    ----------
    run_started : Signal()
        The processor is set up; the camera starts.
    frame_acquired : Signal(int, numpy.ndarray)
        ``(index, frame)`` of a raw frame, after it was written (may be dropped for a
        slow listener; counted).
    volume_ready : Signal(int, numpy.ndarray)
        ``(index, volume)``: frame ``index`` refocused to ``(Z, Y, X)`` float32.
        Emitted on the worker thread.
    stats_updated : Signal(LiveStats)
        About 10 times a second while running, and once at the end.
    acquisition_finished : Signal(int)
        The camera is done (frames acquired given); the raw file is closed. With
        ``policy="all"`` the worker may still be catching up.
    run_finished : Signal(LiveSummary)
        Everything is done and closed.
    run_failed : Signal(str)
        The run stopped on an error: what happened and what is saved where.
        Emitted instead of ``run_finished``.
    """

    run_started = Signal()
    frame_acquired = Signal(int, object)
    volume_ready = Signal(int, object)
    stats_updated = Signal(object)
    acquisition_finished = Signal(int)
    run_finished = Signal(object)
    run_failed = Signal(str)


@dataclass(frozen=True)
class LiveStats:
    """A snapshot of a running (or finished) session; `LiveSession.stats`.

    Rates and latencies are over the last 64 frames / 200 volumes, so they show how
    the system keeps up *now*; `LiveSummary` has the whole-run figures.

    Attributes
    ----------
    state : str
        ``idle``, ``starting`` (processor set-up), ``acquiring``, ``catching_up``
        (camera done, worker still refocusing), ``finished``, ``stopped`` or
        ``failed``.
    elapsed_s : float
        Seconds since `LiveSession.start`.
    frames_acquired, frames_expected : int
        Raw frames written so far, and planned.
    volumes : int
        Volumes made so far.
    skipped : int
        Frames that will not be refocused: replaced by a newer frame before the
        worker took them (``latest``), or dropped from the backlog by ``stop()``.
    queue_depth : int
        Frames waiting to be refocused (in memory and on disk).
    frames_in_memory : int
        Of those, frames held in memory (at most ``max_frames_in_memory``).
    frames_read_back : int
        Frames the worker read back from the raw file (``all``).
    frames_per_s, volumes_per_s : float or None
        Recent acquisition and refocusing rates.
    latency_p50_ms, latency_p99_ms : float or None
        Recent latency from a frame's arrival (``frameReady``) to its volume being
        ready (written and handed on).
    dose_per_frame_J_cm2, dose_total_J_cm2 : float or None
        Light dose per frame (mean) and so far, as the camera reports it (None when
        it does not: a real microscope).
    equivalent_zstack_dose_J_cm2 : float or None
        What the frames so far would have cost as scanned z-stacks (by default of
        the volumes' planes: one exposure per plane instead of one per frame).
    frame_events_dropped : int
        ``frame_acquired`` notifications dropped for a slow listener.
    """

    state: str
    elapsed_s: float
    frames_acquired: int
    frames_expected: int
    volumes: int
    skipped: int
    queue_depth: int
    frames_in_memory: int
    frames_read_back: int
    frames_per_s: float | None
    volumes_per_s: float | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    dose_per_frame_J_cm2: float | None
    dose_total_J_cm2: float | None
    equivalent_zstack_dose_J_cm2: float | None
    frame_events_dropped: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class LiveSummary:
    """What a live session produced (`LiveSession.wait`, ``run_finished``).

    Attributes
    ----------
    frames : int
        Raw frames written.
    fps : float or None
        Frame rate from the frames' camera timestamps.
    volumes : int
        Volumes made (and written, when a volume file was asked for).
    skipped : int
        Frames not refocused (``frames - volumes``).
    volumes_per_s : float or None
        End-to-end rate: volumes / (last volume ready − first frame arrived).
    latency_p50_ms, latency_p99_ms : float or None
        Frame arrival to volume ready, over the whole run.
    raw_output : Path
        The raw time-lapse (``TYX``).
    volume_output : Path or None
        The volume file (``TZYX``), when asked for.
    policy : str
        ``latest`` or ``all``.
    planes_um : tuple of float
        Planes of every volume.
    processor : dict
        The processor's `FrameProcessor.describe` (model identity).
    dose_per_frame_J_cm2, dose_total_J_cm2, equivalent_zstack_dose_J_cm2 : float or None
        As in `acquisition.TimelapseSummary`.
    zstack_planes : int
        Plane count of the comparison z-stack (by default the volumes' plane count).
    frames_read_back : int
        Frames the worker read back from the raw file.
    peak_frames_in_memory : int
        Most frames held in memory for the worker at once.
    canceled : bool
        Stopped (`LiveSession.stop`, Ctrl-C) before all frames were taken or refocused.
    error : str or None
        What went wrong, for a failed run.
    """

    frames: int
    fps: float | None
    volumes: int
    skipped: int
    volumes_per_s: float | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    raw_output: Path
    volume_output: Path | None
    policy: str
    planes_um: tuple[float, ...]
    processor: dict[str, Any]
    dose_per_frame_J_cm2: float | None
    dose_total_J_cm2: float | None
    equivalent_zstack_dose_J_cm2: float | None
    zstack_planes: int
    frames_read_back: int = 0
    peak_frames_in_memory: int = 0
    canceled: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary printed by ``deepz acquire --model ... --json``.

        The keys of ``acquire``'s summary (``output`` is the raw file) plus the
        refocusing figures.
        """
        return {
            "frames": self.frames,
            "fps": _significant(self.fps, 4),
            "output": str(self.raw_output),
            "dose_per_frame_J_cm2": _significant(self.dose_per_frame_J_cm2),
            "dose_total_J_cm2": _significant(self.dose_total_J_cm2),
            "equivalent_zstack_dose_J_cm2": _significant(
                self.equivalent_zstack_dose_J_cm2
            ),
            "volumes": self.volumes,
            "skipped": self.skipped,
            "volumes_per_s": _significant(self.volumes_per_s, 4),
            "latency_p50_ms": _significant(self.latency_p50_ms, 4),
            "latency_p99_ms": _significant(self.latency_p99_ms, 4),
            "raw_output": str(self.raw_output),
            "volume_output": (
                None if self.volume_output is None else str(self.volume_output)
            ),
            "policy": self.policy,
            "planes_um": list(self.planes_um),
            "processor": self.processor,
            "canceled": self.canceled,
        }


def default_volume_path(raw_output: str | Path) -> Path:
    """Where the volumes of a raw file go by default: next to it, same format.

    ``worm.ome.tif`` → ``worm.volumes.ome.tif``; ``worm.ome.zarr`` →
    ``worm.volumes.ome.zarr``; ``worm.tif`` → ``worm.volumes.tif``.
    """
    raw = Path(raw_output)
    name = raw.name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr"):
        if name.endswith(suffix):
            return raw.with_name(f"{name[: -len(suffix)]}.volumes{suffix}")
    return raw.with_name(f"{name}.volumes.ome.tif")


# -- the session ---------------------------------------------------------------------
@dataclass
class _Ticket:
    """A frame waiting for the worker; ``frame`` is None when it waits on disk."""

    index: int
    arrived: float
    frame: np.ndarray | None
    record: dict[str, Any] = field(repr=False)


@dataclass
class _Failure:
    where: str  # "acquisition", "raw", "frame", "processor", "volumes", "setup"
    message: str
    error: BaseException | None


class LiveSession:
    """A time-lapse refocused live: raw frames to disk, every frame into a volume.

    Create it, `start` it (returns at once), then either iterate over it, get
    volumes through ``on_volume`` / ``events.volume_ready``, or `wait` for the
    summary; `stop` ends it early. As a context manager it waits for the run on a
    normal exit, stops it on an exception, and always closes everything.

    Parameters
    ----------
    scope : Microscope
        An open microscope.
    processor : FrameProcessor
        Turns frames into volumes; set up, run and closed on the worker thread.
    frames : int
        Number of frames (≥ 1).
    out : str or Path
        Raw output: ``*.ome.tif`` (crash-safe) or ``*.ome.zarr``. Missing folders
        are created.
    interval_ms : float
        Time between frame starts; 0 streams as fast as the camera can.
    exposure_ms : float
        Camera exposure.
    policy : {"latest", "all"}
        ``latest`` refocuses the newest frame and skips the others (live preview);
        ``all`` refocuses every frame, catching up from the raw file.
    volumes_out : str, Path or None
        Also save the volumes here (``*.ome.tif`` or ``*.ome.zarr``); see
        `default_volume_path`.
    led_intensity : float, optional
        Set the ``LED`` device's ``Intensity`` property first.
    overwrite : bool
        Replace existing output files.
    max_frames_in_memory : int
        ``all``: frames kept in memory for the worker; the rest are read back.
    on_volume : callable, optional
        Connected to ``events.volume_ready``: called as ``on_volume(index, volume)``
        on the worker thread.
    zstack_range_um, zstack_step_um : float, optional
        The scanned stack the dose is compared with (as `acquire_timelapse`).
        Default (both None): a stack of the volumes' own planes, one exposure per
        plane, i.e. what scanning the same volumes would have cost.

    Attributes
    ----------
    events : LiveEvents
        The session's signals.

    Examples
    --------
    >>> session = LiveSession(scope, processor, frames=100, out="run.ome.tif")
    >>> session.events.volume_ready.connect(show)                  # doctest: +SKIP
    >>> session.start()                                            # doctest: +SKIP
    >>> summary = session.wait()                                   # doctest: +SKIP
    """

    def __init__(
        self,
        scope: Microscope,
        processor: FrameProcessor,
        *,
        frames: int,
        out: str | Path,
        interval_ms: float = 0.0,
        exposure_ms: float = 10.0,
        policy: Policy = "latest",
        volumes_out: str | Path | None = None,
        led_intensity: float | None = None,
        overwrite: bool = False,
        max_frames_in_memory: int = 16,
        on_volume: Callable[[int, np.ndarray], object] | None = None,
        zstack_range_um: float | None = None,
        zstack_step_um: float | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise AcquisitionError(
                f"policy must be 'latest' (live preview, skips frames) or 'all' "
                f"(refocus every frame), got {policy!r}."
            )
        if (
            isinstance(max_frames_in_memory, bool)
            or not isinstance(max_frames_in_memory, (int, np.integer))
            or max_frames_in_memory < 1
        ):
            raise AcquisitionError(
                f"max_frames_in_memory must be a whole number ≥ 1, got "
                f"{max_frames_in_memory!r}."
            )
        if not isinstance(processor, FrameProcessor):
            raise TypeError(
                f"{type(processor).__name__} is not a FrameProcessor: it needs "
                "planes_um, setup(), process(), close() and describe()."
            )
        self.scope = scope
        self.processor = processor
        self.frames = frames
        self.out = Path(out)
        self.interval_ms = interval_ms
        self.exposure_ms = exposure_ms
        self.policy: str = policy
        self.volumes_out = None if volumes_out is None else Path(volumes_out)
        self.led_intensity = led_intensity
        self.overwrite = overwrite
        self.max_frames_in_memory = int(max_frames_in_memory)
        self.zstack_range_um = zstack_range_um
        self.zstack_step_um = zstack_step_um
        self.events = LiveEvents()
        if on_volume is not None:
            self.events.volume_ready.connect(on_volume)

        self._planes: tuple[float, ...] = ()
        self._state = "idle"
        self._lock = threading.Lock()  # counters, state, failures
        self._queue = threading.Condition()  # the refocus queue
        self._slot: _Ticket | None = None  # latest
        self._backlog: deque[_Ticket] = deque()  # all
        self._in_memory = 0
        self._stop_requested = False
        self._abandon_backlog = False
        self._acquisition_done = False
        self._done = threading.Event()
        self._failures: list[_Failure] = []
        self._summary: LiveSummary | None = None
        self._threads: list[threading.Thread] = []
        self._subscribers: list[queue.Queue[LiveVolume]] = []
        self._worker_done = False
        self._closed = False
        # events queue
        self._events = threading.Condition()
        self._pending: deque[tuple[str, tuple[Any, ...]]] = deque()
        self._pending_frames = 0
        self._terminal: tuple[str, tuple[Any, ...]] | None = None
        # counters
        self._t_start = 0.0
        self._t_end = 0.0
        self._frames = 0
        self._volumes = 0
        self._skipped = 0
        self._read_back = 0
        self._peak_in_memory = 0
        self._frame_events_dropped = 0
        self._frame_arrivals: deque[float] = deque(maxlen=_RATE_WINDOW)
        self._volume_readies: deque[float] = deque(maxlen=_RATE_WINDOW)
        self._recent_latency: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        self._latencies: list[float] = []
        self._first_arrival: float | None = None
        self._last_ready: float | None = None
        self._times: list[Any] = []
        self._dose_total = 0.0
        self._dose_known = True
        self._canceled = False
        self._raw_failed = False
        # the comparison stack's plane count; the volumes' own (set in start) unless
        # a range or step is given
        self._zstack_planes = 1

    # -- public ----------------------------------------------------------------------
    @property
    def planes_um(self) -> tuple[float, ...]:
        """Planes of every volume (µm from the frame's focus)."""
        return tuple(float(p) for p in self.processor.planes_um)

    @property
    def raw_output(self) -> Path:
        """The raw time-lapse file."""
        return self.out.expanduser().absolute()

    @property
    def volume_output(self) -> Path | None:
        """The volume file, or None when volumes are not saved."""
        if self.volumes_out is None:
            return None
        return self.volumes_out.expanduser().absolute()

    @property
    def pixel_size_um(self) -> float | None:
        """Sample-plane pixel size of the frames (µm), None when not calibrated."""
        return self.scope.core.getPixelSizeUm() or None

    @property
    def state(self) -> str:
        """``idle``, ``starting``, ``acquiring``, ``catching_up``, ``finished``,
        ``stopped`` or ``failed``."""
        return self._state

    @property
    def done(self) -> bool:
        """Whether the run has ended and every event has been emitted."""
        return self._done.is_set()

    @property
    def summary(self) -> LiveSummary | None:
        """The summary once the run has ended (also for a failed run)."""
        return self._summary

    def start(self) -> None:
        """Check everything, open the raw file and start the run; returns at once.

        The worker sets the processor up first; the camera starts when it is ready
        (``run_started``). A processor that cannot serve these frames fails the run
        before any light reaches the sample.

        Raises
        ------
        AcquisitionError
            Invalid settings, a busy microscope, or a session started twice.
        OutputLocationError
            An output exists, cannot be written, or the disk is too small.
        """
        if self._state != "idle" or self._closed:
            raise AcquisitionError(
                "This live session was already started (or closed); create a new "
                "LiveSession for another run."
            )
        if self.zstack_range_um is None and self.zstack_step_um is None:
            _check_timelapse_settings(self.frames, self.interval_ms, self.exposure_ms)
            planes = self._check_planes()
            self._zstack_planes = len(planes)
        else:
            range_um = 20.0 if self.zstack_range_um is None else self.zstack_range_um
            step_um = 1.0 if self.zstack_step_um is None else self.zstack_step_um
            _check_timelapse_settings(
                self.frames, self.interval_ms, self.exposure_ms, range_um, step_um
            )
            planes = self._check_planes()
            self._zstack_planes = round(range_um / step_um) + 1
        scope = self.scope
        core = scope.core
        _check_idle(scope)
        frames = int(self.frames)
        raw = _prepare_output(scope, self.out, frames, overwrite=self.overwrite)
        (height, width), dtype = _frame_layout(scope)
        volume_path = self._check_volume_output(raw, frames, (height, width), planes)
        if self.led_intensity is not None:
            _set_led_intensity(scope, self.led_intensity)
        core.setExposure(self.exposure_ms)
        focus = core.getFocusDevice()
        z_um = float(core.getPosition(focus))
        sequence = useq.MDASequence(
            time_plan={"interval": self.interval_ms / 1000.0, "loops": frames},
            # the focus is held where it is (re-asserted per event when not streamed)
            stage_positions=[{"z": z_um}],
        )
        settings = {
            "frames": frames,
            "interval_ms": self.interval_ms,
            "exposure_ms": self.exposure_ms,
            "led_intensity": self.led_intensity,
            "policy": self.policy,
            "planes_um": list(planes),
            "volume_output": None if volume_path is None else str(volume_path),
        }
        run_metadata = _run_metadata(
            scope, kind="live", sequence=sequence, settings=settings
        )
        self._setup_metadata = {
            "version": SETUP_METADATA_VERSION,
            "pixel_size_um": core.getPixelSizeUm() or None,
            **microscope_optics(scope),
            "exposure_ms": self.exposure_ms,
            "camera": core.getCameraDevice(),
            "config": str(scope.config_path),
            "frames": frames,
            "policy": self.policy,
        }
        writer = _open_writer(scope, raw, "TYX", frames, run_metadata, self.overwrite)
        self._raw_path = raw
        self._volume_path = volume_path
        self._planes = planes
        self._frame_shape = (height, width)
        self._dtype = dtype
        self._sequence = sequence
        self._writer: OmeTiffWriter | OmeZarrWriter = writer
        self._volume_writer: OmeTiffVolumeWriter | OmeZarrVolumeWriter | None = None
        self._writer_lock = threading.Lock()
        self._t_start = time.perf_counter()
        self._state = "starting"
        for target, name in (
            (self._events_main, "deepz-events"),
            (self._worker_main, "deepz-refocus"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, *, finish_backlog: bool = False) -> None:
        """Stop acquiring; returns at once (`wait` for the end).

        Parameters
        ----------
        finish_backlog : bool
            ``all``: refocus the frames already acquired before ending (from the raw
            file). By default the worker ends after the volume in progress, and the
            frames left are counted as skipped (they stay in the raw file:
            ``deepz refocus`` does them later).
        """
        if self._state == "idle" or self._done.is_set():
            return
        with self._queue:
            self._stop_requested = True
            if not finish_backlog:
                self._abandon_backlog = True
            self._queue.notify_all()
        with self._lock:
            self._canceled = True
        try:
            core = self.scope.core
            if core.mda.is_running():
                core.mda.cancel()
        except DeepzError:  # the microscope was closed under us: nothing runs
            pass

    def wait(
        self,
        timeout: float | None = None,
        *,
        progress: Callable[[LiveStats], object] | None = None,
    ) -> LiveSummary:
        """Wait for the run to end; return its summary.

        Ctrl-C while waiting stops the run cleanly (frames so far saved) and raises
        `AcquisitionInterrupted`.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait at most.
        progress : callable, optional
            Called as ``progress(stats)`` on this thread a few times a second.

        Returns
        -------
        LiveSummary

        Raises
        ------
        LiveRunError
            The run failed; the message says what happened and what is saved where
            (``error.summary`` has the figures).
        AcquisitionInterrupted
            Ctrl-C.
        TimeoutError
            ``timeout`` passed first.
        """
        if self._state == "idle":
            raise AcquisitionError("This live session was not started; call start().")
        if threading.current_thread() in self._threads:
            raise AcquisitionError(
                "wait() was called from a LiveSession event listener, which would "
                "wait forever; connect a listener to run_finished instead."
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self._done.wait(_POLL_S):
                if progress is not None:
                    progress(self.stats())
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"The live session did not end within {timeout:g} s "
                        f"(state: {self._state})."
                    )
        except KeyboardInterrupt:
            self.stop()
            self._done.wait()
            summary = self._summary
            assert summary is not None
            raise AcquisitionInterrupted(
                f"Live run interrupted after {summary.frames} of {self.frames} "
                f"frames; {_saved(summary)}.",
                frames_saved=summary.frames,
                output=summary.raw_output if summary.frames else None,
            ) from None
        if progress is not None:
            progress(self.stats())
        summary = self._summary
        assert summary is not None
        if summary.error is not None:
            raise LiveRunError(summary.error, summary=summary)
        return summary

    def stats(self) -> LiveStats:
        """A consistent snapshot of the session's telemetry (any thread, cheap)."""
        with self._queue:
            queue_depth = len(self._backlog) + (self._slot is not None)
            in_memory = self._in_memory + (self._slot is not None)
        with self._lock:
            frames = self._frames
            latencies = sorted(self._recent_latency)
            return LiveStats(
                state=self._state,
                elapsed_s=(
                    (self._t_end or time.perf_counter()) - self._t_start
                    if self._t_start
                    else 0.0
                ),
                frames_acquired=frames,
                frames_expected=int(self.frames) if _is_count(self.frames) else 0,
                volumes=self._volumes,
                skipped=self._skipped,
                queue_depth=queue_depth,
                frames_in_memory=in_memory,
                frames_read_back=self._read_back,
                frames_per_s=_rate(self._frame_arrivals),
                volumes_per_s=_rate(self._volume_readies),
                latency_p50_ms=_percentile_ms(latencies, 50),
                latency_p99_ms=_percentile_ms(latencies, 99),
                dose_per_frame_J_cm2=(
                    self._dose_total / frames if self._dose_known and frames else None
                ),
                dose_total_J_cm2=(
                    self._dose_total if self._dose_known and frames else None
                ),
                equivalent_zstack_dose_J_cm2=(
                    self._dose_total * self._zstack_planes
                    if self._dose_known and frames
                    else None
                ),
                frame_events_dropped=self._frame_events_dropped,
            )

    def close(self) -> None:
        """Stop the run if it is going, wait for it, and release everything."""
        if self._closed:
            return
        self._closed = True
        if self._state != "idle":
            if not self._done.is_set():
                self.stop()
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join()

    def __iter__(self) -> Iterator[LiveVolume]:
        """Iterate over volumes as they are made (starts the run if needed).

        Yields `LiveVolume` ``(index, volume)`` until the run ends; volumes made
        before iteration began are not replayed. Raises `LiveRunError` at the end of
        a failed run.
        """
        subscriber: queue.Queue[LiveVolume] = queue.Queue(_ITERATOR_QUEUE)
        with self._lock:
            self._subscribers.append(subscriber)
        try:
            if self._state == "idle":
                self.start()
            while True:
                try:
                    item = subscriber.get(timeout=_POLL_S)
                except queue.Empty:
                    if self._worker_done and subscriber.empty():
                        break
                    continue
                yield item
        finally:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)
        self._done.wait()
        if self._summary is not None and self._summary.error is not None:
            raise LiveRunError(self._summary.error, summary=self._summary)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None and self._state != "idle":
                self.wait()
        finally:
            if exc_type is not None:
                self.stop()
            self.close()

    def __repr__(self) -> str:
        return (
            f"<LiveSession {self.out.name!r} policy={self.policy!r} "
            f"state={self._state!r}>"
        )

    # -- checks ----------------------------------------------------------------------
    def _check_planes(self) -> tuple[float, ...]:
        try:
            planes = tuple(float(p) for p in self.processor.planes_um)
        except (TypeError, ValueError) as exc:
            raise AcquisitionError(
                f"The processor's planes_um must be a list of distances in µm: {exc}"
            ) from exc
        if not planes or not all(math.isfinite(p) for p in planes):
            raise AcquisitionError(
                f"The processor's planes_um must be a non-empty list of finite "
                f"distances in µm, got {planes}."
            )
        return planes

    def _check_volume_output(
        self,
        raw: Path,
        frames: int,
        frame_shape: tuple[int, int],
        planes: tuple[float, ...],
    ) -> Path | None:
        import shutil

        if self.volumes_out is None:
            return None
        path = self.volumes_out.expanduser().absolute()
        if path == raw:
            raise OutputLocationError(
                f"The volume output {path} is the raw output too; give the volumes "
                "their own file (default: next to the raw file, *.volumes.ome.tif)."
            )
        if path.is_dir() and path.suffix != ".zarr":
            raise OutputLocationError(
                f"{path} is a folder; give a file name such as "
                f"{path / 'run.volumes.ome.tif'}."
            )
        if path.exists() and not self.overwrite:
            raise OutputLocationError(
                f"{path} already exists; choose another volume output or pass "
                "--overwrite."
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputLocationError(
                f"Cannot create the volume folder {path.parent}: "
                f"{exc.strerror or exc}. Choose a location you can write to."
            ) from exc
        if self.policy == "all":  # every frame becomes a volume: check the space
            height, width = frame_shape
            needed = frames * len(planes) * height * width * 4 * _DISK_MARGIN
            free = shutil.disk_usage(path.parent).free
            if raw.parent.stat().st_dev == path.parent.stat().st_dev:
                free -= frames * height * width * self._bytes_per_pixel()
            if needed > free:
                raise OutputLocationError(
                    f"Not enough free disk space in {path.parent} for the volumes: "
                    f"{frames} volumes of {len(planes)}×{height}×{width} float32 need "
                    f"about {_human_bytes(needed)}, {_human_bytes(max(free, 0))} is "
                    "free (after the raw frames). Free some space, save the volumes "
                    "elsewhere, use fewer planes, or don't save volumes."
                )
        return path

    def _bytes_per_pixel(self) -> int:
        return int(self.scope.core.getBytesPerPixel())

    # -- acquisition thread ----------------------------------------------------------
    def _acquisition_main(self) -> None:
        core = self.scope.core
        errors: list[BaseException] = []
        core.mda.events.frameReady.connect(self._on_frame)
        try:
            core.mda.run(self._sequence)
        except BaseException as exc:
            errors.append(exc)
        finally:
            core.mda.events.frameReady.disconnect(self._on_frame)
            try:
                if core.isSequenceRunning():
                    core.stopSequenceAcquisition()
            except Exception:  # the run's own error matters more
                _log.exception("Could not stop the camera's sequence")
        canceled = core.mda.status.finish_reason == FinishReason.CANCELED
        with self._writer_lock:
            frames = self._writer.frames_written
            if errors:
                error = errors[0]
                self._fail("acquisition", self._acquisition_message(error), error)
            elif frames < int(self.frames) and not canceled:
                self._fail(
                    "acquisition",
                    f"The camera delivered only {frames} of {self.frames} frames "
                    "(check the log for camera warnings)",
                    None,
                )
            self._close_raw_writer()
        with self._queue:
            self._acquisition_done = True
            self._queue.notify_all()
        with self._lock:
            if self._state == "acquiring":
                self._state = "catching_up"
        self._post("acquisition_finished", frames)

    def _on_frame(self, image: np.ndarray, event: useq.MDAEvent, meta: Any) -> None:
        """``frameReady``, on the acquisition thread: write, record, hand on."""
        arrived = time.perf_counter()
        if self._stop_requested or self._abandon_backlog:
            # stop() or a worker error came before the runner could be canceled
            self.scope.core.mda.cancel()
        with self._writer_lock:
            if self._writer.closed or self._raw_failed:
                return
            index = self._writer.frames_written
            try:
                frame = self._checked_frame(index, image)
                record = _frame_record(event, meta)
                self._writer.append(frame, record)
            except BaseException as exc:
                where = "raw" if isinstance(exc, OSError) else "frame"
                self._raw_failed = True
                self._fail(where, self._frame_error_message(index, exc), exc)
                self.scope.core.mda.cancel()
                return
        if frame is image:
            frame = frame.copy()  # the camera may reuse its buffer
        dose = record.get("dose_J_cm2")
        with self._lock:
            self._frames += 1
            self._frame_arrivals.append(arrived)
            if self._first_arrival is None:
                self._first_arrival = arrived
            self._times.append(record.get("time_s"))
            if isinstance(dose, (int, float)) and not isinstance(dose, bool):
                self._dose_total += float(dose)
            else:
                self._dose_known = False
        self._enqueue(_Ticket(index, arrived, frame, record))
        if len(self.events.frame_acquired):
            self._post_frame(index, frame)

    def _checked_frame(self, index: int, image: np.ndarray) -> np.ndarray:
        frame = np.asarray(image)
        height, width = self._frame_shape
        if frame.shape != self._frame_shape:
            shape = "×".join(str(n) for n in frame.shape)
            raise _FrameFormatError(
                f"frame {index} is {shape} {frame.dtype}, but this run records "
                f"{height}×{width} {self._dtype} frames: the camera's ROI or binning "
                "changed during the run, or the camera delivered a corrupt frame"
            )
        if frame.dtype != self._dtype:
            if not np.can_cast(frame.dtype, self._dtype, casting="safe"):
                raise _FrameFormatError(
                    f"frame {index} is {frame.dtype}, but this run records "
                    f"{self._dtype} frames, which cannot hold it without loss: the "
                    "camera's pixel type (bit depth) changed during the run"
                )
            frame = frame.astype(self._dtype)
        return frame

    def _enqueue(self, ticket: _Ticket) -> None:
        with self._queue:
            if self.policy == "latest":
                if self._slot is not None:
                    with self._lock:
                        self._skipped += 1
                self._slot = ticket
                with self._lock:
                    self._peak_in_memory = max(self._peak_in_memory, 1)
            else:
                if self._in_memory < self.max_frames_in_memory:
                    self._in_memory += 1
                    with self._lock:
                        self._peak_in_memory = max(
                            self._peak_in_memory, self._in_memory
                        )
                else:
                    ticket.frame = None  # read back from the raw file in its turn
                self._backlog.append(ticket)
            self._queue.notify_all()

    def _close_raw_writer(self) -> None:
        """Close the raw file (OME-XML); a failure here is reported, not raised."""
        writer = self._writer
        if writer.closed:
            return
        if not self._failures:
            writer.run_metadata["result"] = {
                "frames": writer.frames_written,
                "canceled": self._canceled,
                "dose_total_J_cm2": self._dose_total if self._dose_known else None,
            }
        try:
            writer.close()
        except Exception as exc:
            self._fail(
                "raw",
                f"The raw file {writer.path} could not be completed "
                f"({_describe(exc)}); its frames are readable, the OME-XML header "
                "is missing",
                exc,
            )

    # -- worker thread ---------------------------------------------------------------
    def _worker_main(self) -> None:
        try:
            self._worker_run()
        except BaseException as exc:  # a bug of ours: still end the run properly
            _log.exception("The live session's worker failed")
            self._fail("processor", f"Internal error: {_describe(exc)}", exc)
            self._request_abort()
        finally:
            self._finish()

    def _worker_run(self) -> None:
        try:
            self.processor.setup(
                self._frame_shape, self._dtype, dict(self._setup_metadata)
            )
        except BaseException as exc:
            self._fail(
                "setup",
                f"Refocusing could not start ({_describe(exc)}); no frame was taken",
                exc,
            )
            self._end_before_acquiring()
            return
        try:
            self._run_with_processor()
        finally:
            try:
                self.processor.close()
            except Exception as exc:
                _log.exception("The processor's close() failed")
                if not self._failures:
                    self._fail("processor", f"Closing the processor failed: {exc}", exc)

    def _run_with_processor(self) -> None:
        self._writer.run_metadata["processor"] = self._describe_processor()
        if self._stop_requested:
            self._end_before_acquiring()
            return
        if self._volume_path is not None:
            try:
                self._volume_writer = self._open_volume_writer()
            except Exception as exc:
                self._fail(
                    "setup",
                    f"The volume file {self._volume_path} could not be created "
                    f"({_describe(exc)}); no frame was taken",
                    exc,
                )
                self._end_before_acquiring()
                return
        acquisition = threading.Thread(
            target=self._acquisition_main, name="deepz-acquisition", daemon=True
        )
        self._threads.append(acquisition)
        with self._lock:
            self._state = "acquiring"
        self._post("run_started")
        acquisition.start()
        self._refocus_loop()
        acquisition.join()

    def _end_before_acquiring(self) -> None:
        """Close the (empty) raw file, which removes it, and let the run end."""
        with self._writer_lock:
            self._writer.close()
        with self._queue:
            self._acquisition_done = True

    def _describe_processor(self) -> dict[str, Any]:
        try:
            return dict(self.processor.describe())
        except Exception as exc:
            _log.exception("The processor's describe() failed")
            return {"describe_error": _describe(exc)}

    def _open_volume_writer(self) -> OmeTiffVolumeWriter | OmeZarrVolumeWriter:
        assert self._volume_path is not None
        scope = self.scope
        metadata = {
            "kind": "live-volumes",
            "raw_output": str(self._raw_path),
            "policy": self.policy,
            "processor": self._describe_processor(),
            "pixel_size_um": self._setup_metadata["pixel_size_um"],
            "started": self._writer.run_metadata.get("started"),
            "software": self._writer.run_metadata.get("software"),
            "config": str(scope.config_path),
        }
        return open_volume_writer(
            self._volume_path,
            planes_um=self._planes,
            frame_shape=self._frame_shape,
            pixel_size_um=self._setup_metadata["pixel_size_um"],
            run_metadata=metadata,
            overwrite=self.overwrite,
        )

    def _refocus_loop(self) -> None:
        expected = (len(self._planes), *self._frame_shape)
        while True:
            ticket = self._take()
            if ticket is None:
                return
            frame = ticket.frame
            if frame is None:
                try:
                    frame = self._writer.read_frame(ticket.index)
                except Exception as exc:
                    self._fail(
                        "processor",
                        f"Frame {ticket.index} could not be read back from "
                        f"{self._raw_path} for refocusing ({_describe(exc)})",
                        exc,
                    )
                    self._request_abort()
                    return
                with self._lock:
                    self._read_back += 1
            try:
                volume = np.asarray(self.processor.process(frame))
                if volume.shape != expected or not np.issubdtype(
                    volume.dtype, np.floating
                ):
                    raise _FrameFormatError(
                        f"the processor returned a {volume.dtype} array of shape "
                        f"{volume.shape}, not float32 {expected} (planes, y, x)"
                    )
                volume = volume.astype(np.float32, copy=False)
            except BaseException as exc:
                self._fail(
                    "processor",
                    f"Refocusing failed on frame {ticket.index} ({_describe(exc)}); "
                    "acquisition was stopped",
                    exc,
                )
                self._request_abort()
                return
            if not self._deliver(ticket, volume):
                return

    def _take(self) -> _Ticket | None:
        """The next frame to refocus, or None when there is none left to do."""
        with self._queue:
            while True:
                if self._abandon_backlog or self._has_failure(worker_only=True):
                    return None
                if self.policy == "latest" and self._slot is not None:
                    ticket, self._slot = self._slot, None
                    return ticket
                if self._backlog:
                    ticket = self._backlog.popleft()
                    if ticket.frame is not None:
                        self._in_memory -= 1
                    return ticket
                if self._acquisition_done:
                    return None
                self._queue.wait(_POLL_S)

    def _deliver(self, ticket: _Ticket, volume: np.ndarray) -> bool:
        """Write, hand on and announce one volume; False if the run must end."""
        record = ticket.record
        volume_record = {
            "frame_index": ticket.index,
            **{k: record[k] for k in ("time_s", "z_um") if k in record},
        }
        if self._volume_writer is not None:
            try:
                self._volume_writer.append(volume, volume_record)
            except Exception as exc:
                self._fail(
                    "volumes",
                    f"Writing volume {self._volume_writer.volumes_written} to "
                    f"{self._volume_writer.path} failed ({_describe(exc)}); "
                    "acquisition was stopped",
                    exc,
                )
                self._request_abort()
                return False
        ready = time.perf_counter()
        latency = ready - ticket.arrived
        with self._lock:
            self._volumes += 1
            self._volume_readies.append(ready)
            self._recent_latency.append(latency)
            self._latencies.append(latency)
            self._last_ready = ready
            subscribers = list(self._subscribers)
        item = LiveVolume(ticket.index, volume)
        for subscriber in subscribers:
            self._put(subscriber, item)
        self._emit("volume_ready", ticket.index, volume)
        return True

    def _put(self, subscriber: queue.Queue[LiveVolume], item: LiveVolume) -> None:
        """Hand a volume to an iterator; wait while it is full (backpressure)."""
        while not self._abandon_backlog:
            with self._lock:
                if subscriber not in self._subscribers:
                    return
            try:
                subscriber.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _request_abort(self) -> None:
        """Stop acquiring and refocusing after an error."""
        with self._queue:
            self._abandon_backlog = True
            self._queue.notify_all()
        try:
            core = self.scope.core
            if core.mda.is_running():
                core.mda.cancel()
        except DeepzError:
            pass

    def _finish(self) -> None:
        """End of the worker: close files, build the summary, queue the last events."""
        for thread in self._threads:
            if thread.name == "deepz-acquisition" and thread.is_alive():
                thread.join()
        with self._queue:
            self._backlog.clear()
            self._slot = None
            self._in_memory = 0
        if self._volume_writer is not None:
            try:
                self._volume_writer.close()
            except Exception as exc:
                self._fail(
                    "volumes",
                    f"The volume file {self._volume_writer.path} could not be "
                    f"completed ({_describe(exc)}); its volumes are readable, the "
                    "OME-XML header is missing",
                    exc,
                )
        with self._lock:
            self._skipped = self._frames - self._volumes
        summary = self._build_summary()
        self._summary = summary
        with self._lock:
            self._t_end = time.perf_counter()
            if summary.error is not None:
                self._state = "failed"
            elif summary.canceled:
                self._state = "stopped"
            else:
                self._state = "finished"
            self._worker_done = True
        with self._events:
            self._terminal = (
                ("run_failed", (summary.error,))
                if summary.error is not None
                else ("run_finished", (summary,))
            )
            self._events.notify_all()

    def _build_summary(self) -> LiveSummary:
        with self._lock:
            frames, volumes = self._frames, self._volumes
            latencies = sorted(self._latencies)
            span = (
                None
                if self._first_arrival is None or self._last_ready is None
                else self._last_ready - self._first_arrival
            )
            dose_total = self._dose_total if self._dose_known and frames else None
            times = list(self._times)
        n_planes = self._zstack_planes
        volume_output = (
            self._volume_path
            if self._volume_writer is not None and self._volume_path is not None
            else None
        )
        if volume_output is not None and not volume_output.exists():
            volume_output = None  # no volume was made: the writer left no file
        processor = self._describe_processor()
        summary = LiveSummary(
            frames=frames,
            fps=_fps(times),
            volumes=volumes,
            skipped=frames - volumes,
            volumes_per_s=(volumes / span if span and volumes else None),
            latency_p50_ms=_percentile_ms(latencies, 50),
            latency_p99_ms=_percentile_ms(latencies, 99),
            raw_output=self._raw_path,
            volume_output=volume_output,
            policy=self.policy,
            planes_um=self._planes,
            processor=processor,
            dose_per_frame_J_cm2=None if dose_total is None else dose_total / frames,
            dose_total_J_cm2=dose_total,
            equivalent_zstack_dose_J_cm2=(
                None if dose_total is None else dose_total * n_planes
            ),
            zstack_planes=n_planes,
            frames_read_back=self._read_back,
            peak_frames_in_memory=self._peak_in_memory,
            canceled=self._canceled,
        )
        if self._failures:
            first = self._failures[0]
            message = f"{first.message}; {_saved(summary)}."
            if first.where == "setup":
                message = f"{first.message}."
            summary = replace(summary, error=message)
        return summary

    # -- events thread ---------------------------------------------------------------
    def _post(self, name: str, *args: Any) -> None:
        with self._events:
            self._pending.append((name, args))
            self._events.notify_all()

    def _post_frame(self, index: int, frame: np.ndarray) -> None:
        with self._events:
            if self._pending_frames >= _MAX_PENDING_FRAME_EVENTS:
                for item in self._pending:
                    if item[0] == "frame_acquired":
                        self._pending.remove(item)
                        self._pending_frames -= 1
                        break
                with self._lock:
                    self._frame_events_dropped += 1
            self._pending.append(("frame_acquired", (index, frame)))
            self._pending_frames += 1
            self._events.notify_all()

    def _events_main(self) -> None:
        next_stats = 0.0
        try:
            while True:
                with self._events:
                    if not self._pending and self._terminal is None:
                        self._events.wait(_STATS_PERIOD_S)
                    items = list(self._pending)
                    self._pending.clear()
                    self._pending_frames = 0
                    terminal = self._terminal
                for name, args in items:
                    self._emit(name, *args)
                now = time.perf_counter()
                if terminal is not None:
                    with self._events:
                        if self._pending:  # posted while we emitted: go round again
                            continue
                    self._emit("stats_updated", self.stats())
                    self._emit(terminal[0], *terminal[1])
                    return
                if now >= next_stats:
                    next_stats = now + _STATS_PERIOD_S
                    self._emit("stats_updated", self.stats())
        finally:
            self._done.set()

    def _emit(self, name: str, *args: Any) -> None:
        try:
            getattr(self.events, name).emit(*args)
        except Exception:
            _log.exception("A listener of LiveSession.events.%s raised", name)

    # -- failures --------------------------------------------------------------------
    def _fail(self, where: str, message: str, error: BaseException | None) -> None:
        with self._lock:
            self._failures.append(_Failure(where, message, error))

    def _has_failure(self, *, worker_only: bool = False) -> bool:
        with self._lock:
            if not worker_only:
                return bool(self._failures)
            return any(
                f.where in ("processor", "volumes", "setup") for f in self._failures
            )

    def _acquisition_message(self, error: BaseException) -> str:
        frames = self._writer.frames_written
        camera = self.scope.core.getCameraDevice()
        if isinstance(error, TimeoutError):
            reason = (
                f"camera {camera!r} stopped delivering frames: "
                f"{_describe(error).split('. ')[0]}"
            )
        elif isinstance(error, MemoryError):
            reason = "the camera's sequence buffer overflowed"
        else:
            reason = _describe(error)
        return f"Acquisition failed after {frames} of {self.frames} frames ({reason})"

    def _frame_error_message(self, index: int, error: BaseException) -> str:
        if isinstance(error, _FrameFormatError):
            return f"Acquisition stopped: {error}"
        if isinstance(error, OSError):
            reason = _DISK_FULL.get(error.errno or 0) or (
                error.strerror or _describe(error)
            )
            hint = (
                ". Free some space or write elsewhere"
                if error.errno in _DISK_FULL
                else ""
            )
            return (
                f"Writing raw frame {index} to {self._raw_path} failed ({reason}); "
                f"acquisition was stopped{hint}"
            )
        return f"Frame {index} could not be written ({_describe(error)})"


class _FrameFormatError(ValueError):
    """A frame (or volume) whose shape or dtype does not fit the run."""


# -- helpers -------------------------------------------------------------------------
def microscope_optics(scope: Microscope) -> dict[str, float | None]:
    """NA and emission wavelength (µm) from an ``Optics`` device, when there is one.

    Returns
    -------
    dict
        ``{"na": ..., "emission_wavelength_um": ...}``, None where not known (most
        real configurations have no such device).
    """
    core = scope.core
    values: dict[str, float | None] = {"na": None, "emission_wavelength_um": None}
    if OPTICS_DEVICE not in core.getLoadedDevices():
        return values
    for key, prop, scale in (
        ("na", "NA", 1.0),
        ("emission_wavelength_um", "EmissionWavelength_nm", 1e-3),
    ):
        if core.hasProperty(OPTICS_DEVICE, prop):
            try:
                values[key] = float(core.getProperty(OPTICS_DEVICE, prop)) * scale
            except (RuntimeError, ValueError):
                pass
    return values


def _rate(stamps: deque[float]) -> float | None:
    if len(stamps) < 2:
        return None
    span = stamps[-1] - stamps[0]
    return (len(stamps) - 1) / span if span > 0 else None


def _percentile_ms(sorted_seconds: list[float], q: float) -> float | None:
    if not sorted_seconds:
        return None
    return float(np.percentile(sorted_seconds, q)) * 1000.0


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    name = type(error).__name__
    return f"{name}: {text[0]}" if text else name


def _saved(summary: LiveSummary) -> str:
    if summary.frames == 0:
        return "no frames were saved"
    text = (
        f"the {summary.frames} frame{'s' if summary.frames != 1 else ''} acquired are "
        f"saved in {summary.raw_output}"
    )
    if summary.volume_output is not None:
        text += f", {summary.volumes} volumes in {summary.volume_output}"
    elif summary.volumes:
        text += f" ({summary.volumes} refocused)"
    if summary.skipped and summary.policy == "all":
        text += (
            f"; {summary.skipped} frames were not refocused (deepz refocus MODEL "
            f"{summary.raw_output} does it offline)"
        )
    return text
