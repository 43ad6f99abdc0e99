"""The acquisition thread of a live session: run the MDA, write every raw frame.

`RawRecorder` owns the raw file while the camera runs. pymmcore-plus's MDA runner
calls `RawRecorder.on_frame` (``frameReady``) on the ``deepz-acquisition`` thread for
every frame; the callback only checks the frame's shape and dtype, appends it to the
raw writer (one unbuffered page write, well under a millisecond at 512²), counts it
and hands it on without waiting: to the `RefocusQueue`, and to the events thread for
``frame_acquired``. Nothing slow and no user code runs here, so the camera's rate does
not depend on the processor. Raw frames are never dropped: a frame that cannot be
written stops the run, and the failure says why (a full disk, a changed ROI...).

When the runner returns, the camera's sequence is stopped, the raw file is closed (its
OME-XML written; every frame written so far stays readable either way) and the queue
is told that no more frames will come.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from pymmcore_plus.mda import FinishReason

from deepz_live.acquisition._live_policy import FrameTicket
from deepz_live.acquisition._run_records import frame_record

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import useq

    from deepz_live.acquisition._frames import OmeTiffWriter, OmeZarrWriter
    from deepz_live.acquisition._live_plan import LivePlan
    from deepz_live.acquisition._live_policy import RefocusQueue
    from deepz_live.acquisition._live_stats import LiveCounters, RunFailures
    from deepz_live.acquisition._scope import Microscope

__all__ = ["FrameFormatError", "RawRecorder", "describe_error"]

_log = logging.getLogger(__name__)

_DISK_FULL = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file size limit was reached",
}


class FrameFormatError(ValueError):
    """A frame (or volume) whose shape or dtype does not fit the run."""


def describe_error(error: BaseException) -> str:
    """``Type: first line`` of an exception, for messages."""
    text = str(error).strip().splitlines()
    name = type(error).__name__
    return f"{name}: {text[0]}" if text else name


class RawRecorder:
    """Runs one MDA sequence and writes its frames to the raw file.

    Parameters
    ----------
    scope : Microscope
        The microscope the sequence runs on.
    writer : OmeTiffWriter or OmeZarrWriter
        The open raw file (``TYX``).
    plan : LivePlan
        The sequence to run, the frames planned (fewer at the end of a run that was
        not canceled is a failure), and the shape and dtype every frame must have
        (a frame of a safely castable dtype is cast).
    queue : RefocusQueue
        Where written frames go for the worker.
    counters, failures
        The session's figures and failures.
    announce : callable
        ``announce(index, frame)`` for ``frame_acquired``; must not wait.
    stop_requested : callable
        True once `LiveSession.stop` was called.
    """

    def __init__(
        self,
        scope: Microscope,
        writer: OmeTiffWriter | OmeZarrWriter,
        plan: LivePlan,
        *,
        queue: RefocusQueue,
        counters: LiveCounters,
        failures: RunFailures,
        announce: Callable[[int, np.ndarray], None],
        stop_requested: Callable[[], bool],
    ) -> None:
        self.scope = scope
        self.writer = writer
        self.sequence = plan.sequence
        self.frames = plan.frames
        self.frame_shape = plan.frame_shape
        self.dtype = plan.dtype
        self._queue = queue
        self._counters = counters
        self._failures = failures
        self._fail = failures.add
        self._announce = announce
        self._stop_requested = stop_requested
        self._lock = threading.Lock()  # the writer: callback, closing, discarding
        self._failed = False

    @property
    def path(self) -> Path:
        """The raw file."""
        return self.writer.path

    @property
    def frames_written(self) -> int:
        """Frames on disk so far."""
        return self.writer.frames_written

    def read_frame(self, index: int) -> np.ndarray:
        """A frame back from the raw file (any thread; it was written before)."""
        return self.writer.read_frame(index)

    def discard(self) -> None:
        """Close the raw file before any frame: the empty file is removed."""
        with self._lock:
            self.writer.close()

    def run(self) -> int:
        """Run the sequence, then close the raw file; returns the frames written.

        Runs on the acquisition thread; failures are recorded, never raised.
        """
        core = self.scope.core
        errors: list[BaseException] = []
        core.mda.events.frameReady.connect(self.on_frame)
        try:
            core.mda.run(self.sequence)
        except BaseException as exc:
            errors.append(exc)
        finally:
            core.mda.events.frameReady.disconnect(self.on_frame)
            try:
                if core.isSequenceRunning():
                    core.stopSequenceAcquisition()
            except Exception:  # the run's own error matters more
                _log.exception("Could not stop the camera's sequence")
        canceled = core.mda.status.finish_reason == FinishReason.CANCELED
        with self._lock:
            frames = self.writer.frames_written
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
            self._close()
        self._queue.finish_acquiring()
        return frames

    def on_frame(self, image: np.ndarray, event: useq.MDAEvent, meta: Any) -> None:
        """``frameReady``, on the acquisition thread: write, record, hand on."""
        arrived = time.perf_counter()
        if self._stop_requested() or self._queue.abandoned:
            # stop() or a worker error came before the runner could be canceled
            self.scope.core.mda.cancel()
        with self._lock:
            if self.writer.closed or self._failed:
                return
            index = self.writer.frames_written
            try:
                frame = self._checked_frame(index, image)
                record = frame_record(event, meta)
                self.writer.append(frame, record)
            except BaseException as exc:
                where = "raw" if isinstance(exc, OSError) else "frame"
                self._failed = True
                self._fail(where, self._frame_error_message(index, exc), exc)
                self.scope.core.mda.cancel()
                return
        if frame is image:
            frame = frame.copy()  # the camera may reuse its buffer
        self._counters.frame_arrived(arrived, record)
        if self._queue.put(FrameTicket(index, arrived, frame, record)):
            self._counters.frame_skipped()
        self._announce(index, frame)

    def _checked_frame(self, index: int, image: np.ndarray) -> np.ndarray:
        frame = np.asarray(image)
        height, width = self.frame_shape
        if frame.shape != self.frame_shape:
            shape = "×".join(str(n) for n in frame.shape)
            raise FrameFormatError(
                f"frame {index} is {shape} {frame.dtype}, but this run records "
                f"{height}×{width} {self.dtype} frames: the camera's ROI or binning "
                "changed during the run, or the camera delivered a corrupt frame"
            )
        if frame.dtype != self.dtype:
            if not np.can_cast(frame.dtype, self.dtype, casting="safe"):
                raise FrameFormatError(
                    f"frame {index} is {frame.dtype}, but this run records "
                    f"{self.dtype} frames, which cannot hold it without loss: the "
                    "camera's pixel type (bit depth) changed during the run"
                )
            frame = frame.astype(self.dtype)
        return frame

    def _close(self) -> None:
        """Close the raw file (OME-XML); a failure here is reported, not raised."""
        writer = self.writer
        if writer.closed:
            return
        if not self._failures:
            writer.run_metadata["result"] = {
                "frames": writer.frames_written,
                "canceled": self._stop_requested(),
                "dose_total_J_cm2": self._counters.recorded_dose(),
            }
        try:
            writer.close()
        except Exception as exc:
            self._fail(
                "raw",
                f"The raw file {writer.path} could not be completed "
                f"({describe_error(exc)}); its frames are readable, the OME-XML "
                "header is missing",
                exc,
            )

    def _acquisition_message(self, error: BaseException) -> str:
        frames = self.writer.frames_written
        camera = self.scope.core.getCameraDevice()
        if isinstance(error, TimeoutError):
            reason = (
                f"camera {camera!r} stopped delivering frames: "
                f"{describe_error(error).split('. ')[0]}"
            )
        elif isinstance(error, MemoryError):
            reason = "the camera's sequence buffer overflowed"
        else:
            reason = describe_error(error)
        return f"Acquisition failed after {frames} of {self.frames} frames ({reason})"

    def _frame_error_message(self, index: int, error: BaseException) -> str:
        if isinstance(error, FrameFormatError):
            return f"Acquisition stopped: {error}"
        if isinstance(error, OSError):
            reason = _DISK_FULL.get(error.errno or 0) or (
                error.strerror or describe_error(error)
            )
            hint = (
                ". Free some space or write elsewhere"
                if error.errno in _DISK_FULL
                else ""
            )
            return (
                f"Writing raw frame {index} to {self.path} failed ({reason}); "
                f"acquisition was stopped{hint}"
            )
        return f"Frame {index} could not be written ({describe_error(error)})"
