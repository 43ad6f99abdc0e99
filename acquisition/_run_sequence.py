"""The one acquisition loop: a `useq.MDASequence` through ``core.mda`` into its file.

`SequenceRecorder` runs a sequence on pymmcore-plus's MDA runner and writes every
frame, with its record (`frame_record`), to an open OME-TIFF or OME-Zarr writer.
Time-lapses and z-stacks (`run_sequence`, which waits for it) and live sessions
(`LiveSession`, which runs it on a thread of its own) share it, and so share its
guarantees: frames are never dropped (a frame that cannot be written stops the run);
a frame of another shape or pixel type than the file's stops the run; a run that
fails, is canceled, or delivers fewer frames than planned keeps every frame written
so far, in a file closed with its OME-XML (readable page by page in any case). The
file's run metadata gets a ``result`` (frames, canceled, dose) only when the run
ended without a fault and was not aborted. What else happens to a written frame is
the caller's (``on_written``): a time-lapse keeps its record for the summary, a live
session hands the frame to the refocusing queue.

Every fault is reported the same way: a `Fault` whose message is one line naming the
cause (``Type: first line`` of the exception, a full disk, a camera that stopped
delivering...), given to ``on_fault`` as it happens. The caller adds what is saved
where: `run_sequence` raises it as an `AcquisitionError`, a live session reports it
in its summary.

Threading contract
------------------
`SequenceRecorder.run` runs the MDA on the thread that calls it, the acquisition
thread (``deepz-acquisition``). Its ``frameReady`` callback checks the frame,
appends it to the file (one unbuffered page write, well under a millisecond at 512²)
and calls ``on_written``, which must not wait; nothing slow and no user code runs
there, so the camera's rate depends on neither. `SequenceRecorder.cancel`,
`SequenceRecorder.abort` and `SequenceRecorder.close_file` may be called from any
thread. `run_sequence` starts the acquisition thread, reports progress from the
calling thread and turns Ctrl-C (and, on the main thread, SIGTERM and SIGHUP:
`_signals`) into `SequenceRecorder.abort`, so that the runner finishes the way it
would after any cancel (camera stream stopped, sequence torn down) before the file is
closed.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from pymmcore_plus.mda import FinishReason

from deepz_live.acquisition._dose import dose_total
from deepz_live.acquisition._errors import AcquisitionError, DeepzError
from deepz_live.acquisition._run_records import frame_record
from deepz_live.acquisition._signals import StopSignals, interrupted_error

if TYPE_CHECKING:
    from pathlib import Path

    import useq

    from deepz_live.acquisition._frames import OmeTiffWriter, OmeZarrWriter
    from deepz_live.acquisition._scope import Microscope

__all__ = [
    "Fault",
    "FrameFormatError",
    "FrameWritten",
    "ProgressCallback",
    "RecordedRun",
    "RunResult",
    "SequenceRecorder",
    "describe_error",
    "run_sequence",
]

_log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], object]
"""Called as ``progress(frames_done, frames_total)`` on the calling thread."""

FrameWritten = Callable[[int, np.ndarray, dict[str, Any], float], object]
"""``on_written(index, frame, record, arrived)`` after each frame is on disk.

Called on the acquisition thread; must not wait. ``frame`` may be the camera's
buffer (copy it to keep it); ``arrived`` is when the callback began
(``time.perf_counter()``).
"""

_POLL_S = 0.05

_DISK_FULL = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file size limit was reached",
}


class FrameFormatError(ValueError):
    """A frame (or volume) whose shape or dtype does not fit the run."""


class Fault(NamedTuple):
    """What stopped a run, and where (``acquisition``, ``frame`` or ``raw``).

    ``message`` is one line without a final full stop; ``error`` is the exception,
    if there was one.
    """

    where: str
    message: str
    error: BaseException | None


class RecordedRun(NamedTuple):
    """What `SequenceRecorder.run` did: frames written, and whether it was canceled."""

    frames: int
    canceled: bool


def describe_error(error: BaseException) -> str:
    """``Type: first line`` of an exception, for messages."""
    text = str(error).strip().splitlines()
    name = type(error).__name__
    return f"{name}: {text[0]}" if text else name


class SequenceRecorder:
    """Runs one MDA sequence and writes every frame, with its record, to a file.

    Parameters
    ----------
    scope : Microscope
        The microscope the sequence runs on.
    sequence : useq.MDASequence
        The run.
    writer : OmeTiffWriter or OmeZarrWriter
        The open file; every frame must have its ``frame_shape`` and a dtype it
        holds losslessly (such a frame is cast).
    expected : int
        Frames planned; fewer at the end of a run that was not canceled is a fault.
    on_written : callable, optional
        What else happens to each written frame (`FrameWritten`).
    on_fault : callable, optional
        ``on_fault(fault)`` for each `Fault`, on the acquisition thread, as it
        happens (the first one is the cause).
    """

    def __init__(
        self,
        scope: Microscope,
        sequence: useq.MDASequence,
        writer: OmeTiffWriter | OmeZarrWriter,
        expected: int,
        *,
        on_written: FrameWritten | None = None,
        on_fault: Callable[[Fault], object] | None = None,
    ) -> None:
        self.scope = scope
        self.sequence = sequence
        self.writer = writer
        self.expected = int(expected)
        self._on_written = on_written
        self._on_fault = on_fault
        self._lock = threading.Lock()  # the writer: callback, closing
        self._doses: list[Any] = []
        self._faulted = False  # a fault here: write no more frames, no result
        self._aborted = False  # stopped from outside by a failure: no result

    @property
    def path(self) -> Path:
        """The file."""
        return self.writer.path

    @property
    def frames_written(self) -> int:
        """Frames on disk so far."""
        return self.writer.frames_written

    def read_frame(self, index: int) -> np.ndarray:
        """A frame back from the file (any thread; it was written before)."""
        return self.writer.read_frame(index)

    def cancel(self) -> None:
        """Stop the run at the next frame (any thread); the file says ``canceled``.

        A no-op when nothing runs, also once the microscope is closed.
        """
        try:
            core = self.scope.core
        except DeepzError:  # the microscope was closed under us: nothing runs
            return
        core.mda.cancel()

    def abort(self) -> None:
        """Stop the run because of a failure or an interrupt elsewhere (any thread).

        As after a fault here, the file's run metadata gets no ``result``.
        """
        self._aborted = True
        self.cancel()

    def close_file(self) -> None:
        """Close the file now (any thread); later frames are not written.

        A file closed before its first frame is removed.
        """
        with self._lock:
            self.writer.close()

    def run(self) -> RecordedRun:
        """Run the sequence on this thread, then close the file.

        Faults go to ``on_fault``; nothing is raised.
        """
        core = self.scope.core
        run_error: BaseException | None = None
        core.mda.events.frameReady.connect(self._on_frame)
        try:
            core.mda.run(self.sequence)
        except BaseException as exc:
            run_error = exc
        finally:
            core.mda.events.frameReady.disconnect(self._on_frame)
            try:
                if core.isSequenceRunning():
                    core.stopSequenceAcquisition()
            except Exception:  # the run's own error matters more
                _log.exception("Could not stop the camera's sequence")
        canceled = core.mda.status.finish_reason == FinishReason.CANCELED
        with self._lock:
            frames = self.writer.frames_written
            if run_error is not None:
                self._fault(
                    "acquisition", self._run_error_message(run_error), run_error
                )
            elif frames < self.expected and not canceled:
                self._fault(
                    "acquisition",
                    f"The camera delivered only {frames} of {self.expected} frames "
                    "(check the log for camera warnings)",
                    None,
                )
            self._close(canceled)
        return RecordedRun(frames, canceled)

    def _on_frame(self, image: np.ndarray, event: useq.MDAEvent, meta: Any) -> None:
        """``frameReady``, on the acquisition thread: check, write, hand on."""
        arrived = time.perf_counter()
        with self._lock:
            if self.writer.closed or self._faulted:
                return
            index = self.writer.frames_written
            try:
                frame = self._checked_frame(index, image)
                record = frame_record(event, meta)
                self.writer.append(frame, record)
            except BaseException as exc:
                where = "raw" if isinstance(exc, OSError) else "frame"
                self._fault(where, self._frame_error_message(index, exc), exc)
                self.cancel()
                return
            self._doses.append(record.get("dose_J_cm2"))
        if self._on_written is not None:
            self._on_written(index, frame, record, arrived)

    def _fault(self, where: str, message: str, error: BaseException | None) -> None:
        self._faulted = True
        if self._on_fault is not None:
            self._on_fault(Fault(where, message, error))

    def _checked_frame(self, index: int, image: np.ndarray) -> np.ndarray:
        frame = np.asarray(image)
        shape, dtype = self.writer.frame_shape, self.writer.dtype
        if frame.shape != shape:
            height, width = shape
            got = "×".join(str(n) for n in frame.shape)
            raise FrameFormatError(
                f"frame {index} is {got} {frame.dtype}, but this run records "
                f"{height}×{width} {dtype} frames: the camera's ROI or binning "
                "changed during the run, or the camera delivered a corrupt frame"
            )
        if frame.dtype != dtype:
            if not np.can_cast(frame.dtype, dtype, casting="safe"):
                raise FrameFormatError(
                    f"frame {index} is {frame.dtype}, but this run records "
                    f"{dtype} frames, which cannot hold it without loss: the "
                    "camera's pixel type (bit depth) changed during the run"
                )
            frame = frame.astype(dtype)
        return frame

    def _close(self, canceled: bool) -> None:
        """Close the file (OME-XML), with the run's result unless it failed."""
        writer = self.writer
        if writer.closed:
            return
        if not self._faulted and not self._aborted:
            writer.run_metadata["result"] = {
                "frames": writer.frames_written,
                "canceled": canceled,
                "dose_total_J_cm2": dose_total(self._doses),
            }
        try:
            writer.close()
        except Exception as exc:
            self._fault(
                "raw",
                f"The raw file {writer.path} could not be completed "
                f"({describe_error(exc)}); its frames are readable, the OME-XML "
                "header is missing",
                exc,
            )

    def _run_error_message(self, error: BaseException) -> str:
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
        return f"Acquisition failed after {frames} of {self.expected} frames ({reason})"

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


@dataclass
class RunResult:
    """What `run_sequence` recorded: frames written, their metadata, canceled or not."""

    frames: int
    frame_metadata: list[dict[str, Any]]
    canceled: bool


def run_sequence(
    scope: Microscope,
    sequence: useq.MDASequence,
    writer: OmeTiffWriter | OmeZarrWriter,
    expected: int,
    progress: ProgressCallback | None,
) -> RunResult:
    """Run ``sequence`` on an acquisition thread and wait; the file is closed after.

    Raises
    ------
    AcquisitionInterrupted
        Ctrl-C on the calling thread (the runner is canceled first);
        `AcquisitionTerminated` for SIGTERM or SIGHUP, which stop the run the same
        way while it runs (on the main thread: `_signals.StopSignals`).
    AcquisitionError
        A `Fault`: the run or the writer failed, or the camera delivered fewer
        frames than ``expected`` without a cancel. The message ends with what is
        saved where.
    """
    frame_metadata: list[dict[str, Any]] = []
    faults: list[Fault] = []
    recorder = SequenceRecorder(
        scope,
        sequence,
        writer,
        expected,
        on_written=lambda index, frame, record, arrived: frame_metadata.append(record),
        on_fault=faults.append,
    )
    recorded: list[RecordedRun] = []
    # An Event, not Thread.join: a join that Ctrl-C interrupts can mark a thread
    # that is still running as finished (CPython's bpo-45274 handling in 3.11).
    done = threading.Event()

    def acquire() -> None:  # the acquisition thread
        try:
            recorded.append(recorder.run())
        finally:
            done.set()

    thread = threading.Thread(target=acquire, name="deepz-acquisition", daemon=True)
    interrupt: KeyboardInterrupt | None = None
    try:
        with StopSignals():  # SIGTERM and SIGHUP as Ctrl-C (main thread only)
            thread.start()
            try:
                while not done.wait(_POLL_S):
                    if progress is not None:
                        progress(recorder.frames_written, expected)
            except KeyboardInterrupt as exc:
                interrupt = exc
                recorder.abort()
                done.wait()
    finally:
        if done.is_set():
            thread.join()
        else:  # interrupted again while the runner was finishing
            recorder.close_file()

    saved = recorder.frames_written
    where = _saved_message(saved, writer.path)
    if interrupt is not None:
        raise interrupted_error(
            interrupt,
            f"after {saved} of {expected} frames; {where}",
            frames_saved=saved,
            output=writer.path if saved else None,
        )
    if faults:
        fault = faults[0]
        raise AcquisitionError(f"{fault.message}; {where}.") from fault.error
    if progress is not None:
        progress(saved, expected)
    return RunResult(saved, frame_metadata, recorded[0].canceled)


def _saved_message(saved: int, path: Path) -> str:
    if saved == 0:
        return "no frames were saved"
    return f"the {saved} frame{'s' if saved != 1 else ''} acquired are saved in {path}"
