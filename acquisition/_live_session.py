"""Live processing of a time-lapse: raw frames to disk, every frame into a volume.

A `LiveSession` runs a single-plane time-lapse on a `Microscope`, writes every raw
frame losslessly as it arrives, and hands frames to a `FrameProcessor` (in deepz-live,
a Deep-Z refocuser adapted by ``deepz``) that turns each into a volume. Volumes go to
the ``volume_ready`` event, to iterators over the session, and optionally to a volume
file. This layer knows nothing of models. This module is the session's lifecycle;
its parts are `PreparedRun` (checks before the first frame), `SequenceRecorder` (the
acquisition loop time-lapses and z-stacks run too, ``_run_sequence``), `RefocusWorker`
(worker thread), `RefocusQueue` and `Policy`, `EventPump` and `LiveCounters` /
`LiveStats` / `LiveSummary`, each in a ``_live_*`` module.

Threading contract
------------------
A session runs three threads of its own; the thread that calls `LiveSession.start`
(a script, or a thread of the panel's) only starts, stops, reads `LiveSession.stats`
and, when it chooses to, waits.

``deepz-acquisition`` (`SequenceRecorder`): pymmcore-plus's MDA runner. Its
    ``frameReady`` callback checks the frame, appends it to the raw file, records
    its metadata and dose, and hands it on without waiting: to the refocus queue
    and, if anyone listens to ``frame_acquired``, to the events queue. No user code,
    no inference, no lock held by a slow thread runs here, so the camera's rate does
    not depend on the processor. Raw frames are never dropped.
``deepz-refocus`` (`RefocusWorker`): owns the processor (`FrameProcessor.setup`
    before the camera starts, so a model that does not fit costs no light; then
    ``process`` per frame and ``close``): what it allocates (a CUDA context and
    stream, engine buffers) belongs to this thread. It writes the volume file,
    feeds iterators and emits ``volume_ready``: listeners connected without a
    ``thread`` run here and slow the worker, never the camera.
``deepz-events`` (`EventPump`): emits ``frame_acquired``, ``stats_updated`` (about
    10 times a second while running) and the lifecycle events ``run_started``,
    ``acquisition_finished``, then ``run_finished`` or ``run_failed``, in that order.
    A listener that raises is logged and does not stop the run.

Queues between them, all bounded: the refocus queue by `Policy` (``latest``: one
slot, replaced frames counted in ``LiveStats.skipped``; ``all``: FIFO with at most
``max_frames_in_memory`` frames in memory, the rest read back from the raw file); at
most 8 waiting ``frame_acquired`` notifications (the oldest dropped, counted in
``LiveStats.frame_events_dropped``; lifecycle events are never dropped); 4 volumes per
iterator, for which the worker waits (``latest`` skips more, ``all`` keeps more on
disk).

The panel (``gui._session.LiveController``) opens the microscope and the model and
calls `LiveSession.start` in a thread of its own, `LiveSession.stop` on the GUI thread
(it returns at once) and `LiveSession.close` (it joins the threads) in another thread.
It connects to the events without ``thread=``: its slots run on ``deepz-events`` (or
``deepz-refocus`` for ``volume_ready``) and only hand a reference to a
``LatestOnlyThrottle`` (``gui._throttle``) or emit a queued Qt signal. A QTimer on
the GUI thread takes the newest frame, volume and stats about 30 times a second (the
rest are dropped and counted) and polls `LiveSession.stats`; ``run_finished`` and
``run_failed`` arrive as queued Qt signals after a last flush. (psygnal's
``thread="main"`` is not used: it queues every emission for the GUI thread, and needs
``psygnal.qt.start_emitting_from_queue``.) Never call `LiveSession.wait` on the GUI
thread or in a listener.

Faults: a camera error or timeout, a stage error, a full disk, or a frame of
unexpected shape or dtype stops acquiring; every frame written so far stays in the raw
file (closed with its OME-XML when the disk allows, readable in any case). With
``policy="all"`` the worker still refocuses every acquired frame, then the run is
reported failed, saying what happened and what is saved where. A processor (model)
error or a volume file that cannot be written stops the whole run at once.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from queue import Empty
from typing import TYPE_CHECKING, Any

import numpy as np

from deepz_live.acquisition._errors import AcquisitionError, LiveRunError
from deepz_live.acquisition._frame_processor import FrameProcessor
from deepz_live.acquisition._live_events import EventPump, LiveEvents
from deepz_live.acquisition._live_policy import FrameTicket, Policy, RefocusQueue
from deepz_live.acquisition._live_prepare import PreparedRun, prepare_live_run
from deepz_live.acquisition._live_stats import (
    LiveCounters,
    LiveState,
    LiveStats,
    LiveSummary,
    RunFailures,
    saved_message,
)
from deepz_live.acquisition._live_worker import (
    LiveVolume,
    RefocusWorker,
    VolumeSubscribers,
)
from deepz_live.acquisition._run_records import open_run_writer
from deepz_live.acquisition._run_sequence import SequenceRecorder, describe_error
from deepz_live.acquisition._signals import (
    SignalInterrupt,
    StopSignals,
    interrupted_error,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import TracebackType

    from typing_extensions import Self

    from deepz_live.acquisition._scope import Microscope

__all__ = ["LiveSession"]

_log = logging.getLogger(__name__)

_POLL_S = 0.1


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
    plan : dict, optional
        The `RunPlan` this session runs (``RunPlan.to_metadata()``), saved in the raw
        file's run metadata as ``plan``.

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
        plan: dict[str, Any] | None = None,
    ) -> None:
        self._queue = RefocusQueue(policy, max_frames_in_memory)  # checks both
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
        self.policy: Policy = self._queue.policy
        self.volumes_out = None if volumes_out is None else Path(volumes_out)
        self.led_intensity = led_intensity
        self.overwrite = overwrite
        self.max_frames_in_memory = self._queue.max_frames_in_memory
        self.zstack_range_um = zstack_range_um
        self.zstack_step_um = zstack_step_um
        self.plan = plan
        self.events = LiveEvents()
        if on_volume is not None:
            self.events.volume_ready.connect(on_volume)

        self._lock = threading.Lock()  # state transitions
        self._state = LiveState.IDLE
        self._stop_requested = False  # stop() was called: the run is canceled
        self._worker_done = False
        self._closed = False
        self._summary: LiveSummary | None = None
        self._counters = LiveCounters()
        self._failures = RunFailures()
        self._subscribers = VolumeSubscribers(lambda: self._queue.abandoned)
        self._pump = EventPump(self.events, self.stats)
        self._events_thread: threading.Thread | None = None
        self._worker_thread: threading.Thread | None = None
        self._acquisition_thread: threading.Thread | None = None
        self._signals = StopSignals()  # SIGTERM, SIGHUP as Ctrl-C while running
        # set by start()
        self._prepared: PreparedRun | None = None
        self._recorder: SequenceRecorder
        self._worker: RefocusWorker

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
    def state(self) -> LiveState:
        """Where the run is (`LiveState`; compares equal to its string value)."""
        return self._state

    @property
    def done(self) -> bool:
        """Whether the run has ended and every event has been emitted."""
        return self._pump.done.is_set()

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
        if self._state != LiveState.IDLE or self._closed:
            raise AcquisitionError(
                "This live session was already started (or closed); create a new "
                "LiveSession for another run."
            )
        prepared = prepare_live_run(
            self.scope,
            self.processor,
            frames=self.frames,
            out=self.out,
            interval_ms=self.interval_ms,
            exposure_ms=self.exposure_ms,
            policy=self.policy,
            volumes_out=self.volumes_out,
            led_intensity=self.led_intensity,
            overwrite=self.overwrite,
            zstack_range_um=self.zstack_range_um,
            zstack_step_um=self.zstack_step_um,
            plan=self.plan,
        )
        writer = open_run_writer(
            self.scope,
            prepared.raw_path,
            "TYX",
            prepared.frames,
            prepared.run_metadata,
            self.overwrite,
        )
        self._recorder = SequenceRecorder(
            self.scope,
            prepared.sequence,
            writer,
            prepared.frames,
            on_written=self._hand_on,
            on_fault=lambda fault: self._failures.add(*fault),
        )
        self._worker = RefocusWorker(
            self.processor,
            prepared,
            queue=self._queue,
            recorder=self._recorder,
            counters=self._counters,
            failures=self._failures,
            subscribers=self._subscribers,
            emit=self._pump.emit,
            abort=self._request_abort,
            policy=self.policy,
            overwrite=self.overwrite,
            config=str(self.scope.config_path),
        )
        self._prepared = prepared
        self._counters.start_clock()
        self._state = LiveState.STARTING
        self._events_thread = threading.Thread(
            target=self._pump.run, name="deepz-events", daemon=True
        )
        self._worker_thread = threading.Thread(
            target=self._worker_main, name="deepz-refocus", daemon=True
        )
        self._signals.install()  # main thread only; restored by wait() or close()
        self._events_thread.start()
        self._worker_thread.start()

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
        if self._state == LiveState.IDLE or self.done:
            return
        self._stop_requested = True
        if not finish_backlog:
            self._queue.abandon()
        self._recorder.cancel()

    def wait(
        self,
        timeout: float | None = None,
        *,
        progress: Callable[[LiveStats], object] | None = None,
    ) -> LiveSummary:
        """Wait for the run to end; return its summary.

        Ctrl-C while waiting stops the run cleanly (frames so far saved) and raises
        `AcquisitionInterrupted`; so do SIGTERM and SIGHUP for a session started on
        the main thread (`AcquisitionTerminated`, with the signal).

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
            Ctrl-C, or `AcquisitionTerminated`: SIGTERM or SIGHUP.
        TimeoutError
            ``timeout`` passed first.
        """
        if self._state == LiveState.IDLE:
            raise AcquisitionError("This live session was not started; call start().")
        if threading.current_thread() in self._threads():
            raise AcquisitionError(
                "wait() was called from a LiveSession event listener, which would "
                "wait forever; connect a listener to run_finished instead."
            )
        done = self._pump.done
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not done.wait(_POLL_S):
                if progress is not None:
                    progress(self.stats())
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"The live session did not end within {timeout:g} s "
                        f"(state: {self._state})."
                    )
        except KeyboardInterrupt as exc:
            self.stop()
            done.wait()
            self._signals.restore()
            raise self._interrupted_error(exc) from None
        self._signals.restore()
        if progress is not None:
            progress(self.stats())
        summary = self._summary
        assert summary is not None
        if summary.error is not None:
            raise LiveRunError(summary.error, summary=summary)
        return summary

    def stats(self) -> LiveStats:
        """A consistent snapshot of the session's telemetry (any thread, cheap)."""
        queue_depth, in_memory = self._queue.depth()
        return self._counters.snapshot(
            state=self._state,
            frames_expected=int(self.frames) if _is_count(self.frames) else 0,
            queue_depth=queue_depth,
            frames_in_memory=in_memory,
            zstack_planes=1 if self._prepared is None else self._prepared.zstack_planes,
            frame_events_dropped=self._pump.frame_events_dropped,
        )

    def close(self) -> None:
        """Stop the run if it is going, wait for it, and release everything."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._state != LiveState.IDLE:
                if not self.done:
                    self.stop()
                for thread in self._threads():
                    if thread is not threading.current_thread():
                        thread.join()
        finally:
            self._signals.restore()

    def __iter__(self) -> Iterator[LiveVolume]:
        """Iterate over volumes as they are made (starts the run if needed).

        Yields `LiveVolume` ``(index, volume)`` until the run ends; volumes made
        before iteration began are not replayed. Raises `LiveRunError` at the end of
        a failed run.
        """
        subscriber = self._subscribers.add()
        try:
            if self._state == LiveState.IDLE:
                self.start()
            while True:
                try:
                    item = subscriber.get(timeout=_POLL_S)
                except Empty:
                    if self._worker_done and subscriber.empty():
                        break
                    continue
                yield item
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP: stop cleanly, then raise
            self.stop()
            raise
        finally:
            self._subscribers.remove(subscriber)
        self._pump.done.wait()
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
            if exc_type is None and self._state != LiveState.IDLE:
                self.wait()
        finally:
            if exc_type is not None:
                self.stop()
            self.close()
        if isinstance(exc, SignalInterrupt) and self._summary is not None:
            # stopped by SIGTERM or SIGHUP outside wait(): say so, with the exit code
            raise self._interrupted_error(exc) from None

    def __repr__(self) -> str:
        return (
            f"<LiveSession {self.out.name!r} policy={self.policy!r} "
            f"state={self._state.value!r}>"
        )

    # -- acquisition thread (the loop itself is SequenceRecorder's) ----------------
    def _acquisition_main(self) -> None:
        frames = self._recorder.run().frames
        self._queue.finish_acquiring()
        with self._lock:
            if self._state == LiveState.ACQUIRING:
                self._state = LiveState.CATCHING_UP
        self._pump.post("acquisition_finished", frames)

    def _hand_on(
        self, index: int, frame: np.ndarray, record: dict[str, Any], arrived: float
    ) -> None:
        """Each raw frame once written: to the refocus queue and ``frame_acquired``."""
        if self._stop_requested or self._queue.abandoned:
            # stop() or a worker error came before the runner could be canceled
            self._recorder.cancel()
        frame = frame.copy()  # the camera may reuse its buffer
        self._counters.frame_arrived(arrived, record)
        if self._queue.put(FrameTicket(index, arrived, frame, record)):
            self._counters.frame_skipped()
        self._pump.post_frame(index, frame)

    # -- worker thread (the refocusing itself is RefocusWorker's) --------------------
    def _worker_main(self) -> None:
        try:
            self._worker.run(
                start_camera=self._start_camera,
                stop_requested=lambda: self._stop_requested,
            )
        except BaseException as exc:  # a bug of ours: still end the run properly
            _log.exception("The live session's worker failed")
            self._failures.add(
                "processor", f"Internal error: {describe_error(exc)}", exc
            )
            self._request_abort()
        finally:
            self._finish()

    def _start_camera(self) -> threading.Thread:
        """Start the acquisition thread (the processor is ready)."""
        acquisition = threading.Thread(
            target=self._acquisition_main, name="deepz-acquisition", daemon=True
        )
        self._acquisition_thread = acquisition
        with self._lock:
            self._state = LiveState.ACQUIRING
        self._pump.post("run_started")
        acquisition.start()
        return acquisition

    def _request_abort(self) -> None:
        """Stop acquiring and refocusing after an error (no result in the raw file)."""
        self._recorder.abort()
        self._queue.abandon()

    def _finish(self) -> None:
        """End of the worker: close files, build the summary, queue the last events."""
        acquisition = self._acquisition_thread
        if acquisition is not None and acquisition.is_alive():
            acquisition.join()
        self._queue.clear()
        self._worker.close_volume_file()
        self._counters.settle_skipped()
        summary = self._build_summary()
        self._summary = summary
        self._counters.stop_clock()
        self._signals.finish()  # later signals go to the handlers from before
        with self._lock:
            if summary.error is not None:
                self._state = LiveState.FAILED
            elif summary.canceled:
                self._state = LiveState.STOPPED
            else:
                self._state = LiveState.FINISHED
            self._worker_done = True
        if summary.error is not None:
            self._pump.post_terminal("run_failed", summary.error)
        else:
            self._pump.post_terminal("run_finished", summary)

    def _interrupted_error(self, interrupt: KeyboardInterrupt) -> AcquisitionError:
        summary = self._summary
        assert summary is not None
        return interrupted_error(
            interrupt,
            f"after {summary.frames} of {self.frames} frames; {saved_message(summary)}",
            frames_saved=summary.frames,
            output=summary.raw_output if summary.frames else None,
            subject="Live run",
        )

    def _build_summary(self) -> LiveSummary:
        assert self._prepared is not None
        summary = self._counters.summary(
            raw_output=self._prepared.raw_path,
            volume_output=self._worker.volume_output,
            policy=self.policy,
            planes_um=self._prepared.planes_um,
            processor=self._worker.describe_processor(),
            zstack_planes=self._prepared.zstack_planes,
            peak_frames_in_memory=self._queue.peak_in_memory,
            canceled=self._stop_requested,
        )
        return self._failures.report(summary)

    def _threads(self) -> list[threading.Thread]:
        threads = (self._events_thread, self._worker_thread, self._acquisition_thread)
        return [thread for thread in threads if thread is not None]


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
