"""The refocusing side of a live session (``deepz-refocus``): frames in, volumes out.

`RefocusWorker` owns the `FrameProcessor` and the volume file, and every call to
either happens on the session's worker thread: whatever the processor allocates in
`FrameProcessor.setup` (a CUDA context and stream, engine buffers) belongs to that
thread. It takes frames from the `RefocusQueue`, reading back from the raw file those
that wait on disk, refocuses each, checks the volume's shape, appends it to the volume
file, hands it to every iterator (`VolumeSubscribers`: 4 volumes each; the worker
waits for a slow iterator) and emits ``volume_ready`` itself, so that a slow listener
slows the worker, never the camera. A processor error, a frame that cannot be read
back or a volume that cannot be written is recorded and stops the whole run at once
(``abort``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from deepz_live.acquisition._run_sequence import FrameFormatError, describe_error
from deepz_live.acquisition._volumes import INSTRUMENT_METADATA_KEYS, open_volume_writer

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from deepz_live.acquisition._frame_processor import FrameProcessor
    from deepz_live.acquisition._live_policy import FrameTicket, RefocusQueue
    from deepz_live.acquisition._live_prepare import PreparedRun
    from deepz_live.acquisition._live_stats import LiveCounters, RunFailures
    from deepz_live.acquisition._run_sequence import SequenceRecorder
    from deepz_live.acquisition._volumes import (
        OmeTiffVolumeWriter,
        OmeZarrVolumeWriter,
    )

__all__ = ["LiveVolume", "RefocusWorker", "VolumeSubscribers"]

_log = logging.getLogger(__name__)

_POLL_S = 0.1
_ITERATOR_QUEUE = 4


class LiveVolume(NamedTuple):
    """One refocused volume: the index of its frame and the ``(Z, Y, X)`` array."""

    index: int  # type: ignore[assignment]  # the frame's index, not tuple.index
    volume: np.ndarray


class VolumeSubscribers:
    """The queues of the iterators over a session (``for index, volume in session``).

    Parameters
    ----------
    abandoned : callable
        True once the run stops refocusing: a waiting delivery gives up.
    """

    def __init__(self, abandoned: Callable[[], bool]) -> None:
        self._abandoned = abandoned
        self._lock = threading.Lock()
        self._queues: list[queue.Queue[LiveVolume]] = []

    def add(self) -> queue.Queue[LiveVolume]:
        """A new iterator's queue (bounded: the worker waits while it is full)."""
        subscriber: queue.Queue[LiveVolume] = queue.Queue(_ITERATOR_QUEUE)
        with self._lock:
            self._queues.append(subscriber)
        return subscriber

    def remove(self, subscriber: queue.Queue[LiveVolume]) -> None:
        """The iterator has ended: deliver nothing more to it."""
        with self._lock:
            if subscriber in self._queues:
                self._queues.remove(subscriber)

    def deliver(self, item: LiveVolume) -> None:
        """Hand a volume to every iterator; wait while one is full (backpressure)."""
        with self._lock:
            subscribers = list(self._queues)
        for subscriber in subscribers:
            while not self._abandoned():
                with self._lock:
                    if subscriber not in self._queues:
                        break
                try:
                    subscriber.put(item, timeout=_POLL_S)
                    break
                except queue.Full:
                    continue


class RefocusWorker:
    """Turns a run's frames into volumes; every method runs on the worker thread.

    Parameters
    ----------
    processor : FrameProcessor
        Set up, run and closed here.
    plan : PreparedRun
        The run's layout and files.
    queue : RefocusQueue
        Where the frames come from.
    recorder : SequenceRecorder
        The acquisition loop and its raw file, to read back frames that wait on
        disk.
    counters, failures
        The session's figures and failures.
    subscribers : VolumeSubscribers
        The iterators to hand volumes to.
    emit : callable
        ``emit("volume_ready", index, volume)`` on this thread.
    abort : callable
        Stops acquiring and refocusing after an error.
    policy, overwrite, config
        For the volume file's metadata and creation.
    """

    def __init__(
        self,
        processor: FrameProcessor,
        plan: PreparedRun,
        *,
        queue: RefocusQueue,
        recorder: SequenceRecorder,
        counters: LiveCounters,
        failures: RunFailures,
        subscribers: VolumeSubscribers,
        emit: Callable[..., None],
        abort: Callable[[], None],
        policy: str,
        overwrite: bool,
        config: str,
    ) -> None:
        self.processor = processor
        self.plan = plan
        self._queue = queue
        self._recorder = recorder
        self._counters = counters
        self._failures = failures
        self._subscribers = subscribers
        self._emit = emit
        self._abort = abort
        self._policy = policy
        self._overwrite = overwrite
        self._config = config
        self.volume_writer: OmeTiffVolumeWriter | OmeZarrVolumeWriter | None = None

    def run(
        self,
        *,
        start_camera: Callable[[], threading.Thread],
        stop_requested: Callable[[], bool],
    ) -> None:
        """The worker thread's run: set up, start the camera, refocus, close.

        The camera starts (``start_camera()`` starts the acquisition thread) only
        once the processor is set up and the volume file is created, and unless a
        stop came first; otherwise the empty raw file is removed. The acquisition
        thread has ended before the processor closes.
        """
        if not self._set_up():
            self._end_before_acquiring()
            return
        try:
            self._recorder.writer.run_metadata["processor"] = self.describe_processor()
            if stop_requested() or not self._open_volume_file():
                self._end_before_acquiring()
                return
            acquisition = start_camera()
            self.refocus()
            acquisition.join()
        finally:
            self._close_processor()

    def _end_before_acquiring(self) -> None:
        """Close the (empty) raw file, which removes it, and let the run end."""
        self._recorder.close_file()
        self._queue.finish_acquiring()

    # -- before and after the frames -----------------------------------------------
    def _set_up(self) -> bool:
        """`FrameProcessor.setup` for this run; False (failure recorded) if it fails."""
        plan = self.plan
        try:
            self.processor.setup(
                plan.frame_shape, plan.dtype, dict(plan.setup_metadata)
            )
        except BaseException as exc:
            self._failures.add(
                "setup",
                f"Refocusing could not start ({describe_error(exc)}); no frame was "
                "taken",
                exc,
            )
            return False
        return True

    def describe_processor(self) -> dict[str, Any]:
        """The processor's identity; an error becomes ``describe_error``."""
        try:
            return dict(self.processor.describe())
        except Exception as exc:
            _log.exception("The processor's describe() failed")
            return {"describe_error": describe_error(exc)}

    def _open_volume_file(self) -> bool:
        """Create the volume file, if asked for; False (failure recorded) if not."""
        plan = self.plan
        if plan.volume_path is None:
            return True
        run_metadata = self._recorder.writer.run_metadata
        metadata = {
            "kind": "live-volumes",
            "raw_output": str(plan.raw_path),
            "policy": self._policy,
            "processor": self.describe_processor(),
            "pixel_size_um": plan.setup_metadata["pixel_size_um"],
            "started": run_metadata.get("started"),
            "software": run_metadata.get("software"),
            "config": self._config,
            # the microscope, for the volume file's OME Instrument and Channel
            **{
                key: run_metadata[key]
                for key in INSTRUMENT_METADATA_KEYS
                if key in run_metadata
            },
        }
        try:
            self.volume_writer = open_volume_writer(
                plan.volume_path,
                planes_um=plan.planes_um,
                frame_shape=plan.frame_shape,
                pixel_size_um=plan.setup_metadata["pixel_size_um"],
                run_metadata=metadata,
                overwrite=self._overwrite,
            )
        except Exception as exc:
            self._failures.add(
                "setup",
                f"The volume file {plan.volume_path} could not be created "
                f"({describe_error(exc)}); no frame was taken",
                exc,
            )
            return False
        return True

    def _close_processor(self) -> None:
        """`FrameProcessor.close`; its failure is recorded unless another came first."""
        try:
            self.processor.close()
        except Exception as exc:
            _log.exception("The processor's close() failed")
            if not self._failures:
                self._failures.add(
                    "processor", f"Closing the processor failed: {exc}", exc
                )

    def close_volume_file(self) -> None:
        """Finish the volume file (OME-XML); a failure is recorded, not raised."""
        writer = self.volume_writer
        if writer is None:
            return
        try:
            writer.close()
        except Exception as exc:
            self._failures.add(
                "volumes",
                f"The volume file {writer.path} could not be completed "
                f"({describe_error(exc)}); its volumes are readable, the OME-XML "
                "header is missing",
                exc,
            )

    @property
    def volume_output(self) -> Path | None:
        """The volume file, if one was opened and holds at least one volume."""
        path = self.plan.volume_path
        if self.volume_writer is None or path is None or not path.exists():
            return None  # none asked for, or no volume was made: no file left
        return path

    # -- the frames ------------------------------------------------------------------
    def refocus(self) -> None:
        """Refocus frames until there are none left, the run stops, or an error."""
        expected = (len(self.plan.planes_um), *self.plan.frame_shape)
        while (ticket := self._queue.take()) is not None:
            frame = ticket.frame
            if frame is None:
                try:
                    frame = self._recorder.read_frame(ticket.index)
                except Exception as exc:
                    self._failures.add(
                        "processor",
                        f"Frame {ticket.index} could not be read back from "
                        f"{self.plan.raw_path} for refocusing ({describe_error(exc)})",
                        exc,
                    )
                    self._abort()
                    return
                self._counters.frame_read_back()
            try:
                volume = np.asarray(self.processor.process(frame))
                if volume.shape != expected or not np.issubdtype(
                    volume.dtype, np.floating
                ):
                    raise FrameFormatError(
                        f"the processor returned a {volume.dtype} array of shape "
                        f"{volume.shape}, not float32 {expected} (planes, y, x)"
                    )
                volume = volume.astype(np.float32, copy=False)
            except BaseException as exc:
                self._failures.add(
                    "processor",
                    f"Refocusing failed on frame {ticket.index} "
                    f"({describe_error(exc)}); acquisition was stopped",
                    exc,
                )
                self._abort()
                return
            if not self._deliver(ticket, volume):
                return

    def _deliver(self, ticket: FrameTicket, volume: np.ndarray) -> bool:
        """Write, hand on and announce one volume; False if the run must end."""
        record = ticket.record
        volume_record: dict[str, Any] = {
            "frame_index": ticket.index,
            **{k: record[k] for k in ("time_s", "z_um") if k in record},
        }
        writer = self.volume_writer
        if writer is not None:
            try:
                writer.append(volume, volume_record)
            except Exception as exc:
                self._failures.add(
                    "volumes",
                    f"Writing volume {writer.volumes_written} to {writer.path} "
                    f"failed ({describe_error(exc)}); acquisition was stopped",
                    exc,
                )
                self._abort()
                return False
        self._counters.volume_made(ticket.arrived, time.perf_counter())
        self._subscribers.deliver(LiveVolume(ticket.index, volume))
        self._emit("volume_ready", ticket.index, volume)
        return True
