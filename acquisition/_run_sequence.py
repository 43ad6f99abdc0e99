"""Running one MDA sequence of a scripted acquisition into its file.

Threading contract
------------------
The MDA runs on a worker thread ("deepz-acquisition"). Its ``frameReady`` callback
only appends the frame to the writer (one uncompressed page write, well under a
millisecond at 512²) and records the frame's metadata; it never blocks on anything
else. The calling thread waits, reports progress, and turns Ctrl-C into
``core.mda.cancel()``, so that the runner finishes the way it would after any cancel
(camera stream stopped, sequence torn down) before the file is closed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pymmcore_plus.mda import FinishReason

from deepz_live.acquisition._dose import dose_total
from deepz_live.acquisition._errors import AcquisitionError, AcquisitionInterrupted
from deepz_live.acquisition._run_records import frame_record

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import useq

    from deepz_live.acquisition._frames import OmeTiffWriter, OmeZarrWriter
    from deepz_live.acquisition._scope import Microscope

__all__ = ["ProgressCallback", "RunResult", "run_sequence"]

ProgressCallback = Callable[[int, int], object]
"""Called as ``progress(frames_done, frames_total)`` on the calling thread."""

_POLL_S = 0.05


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
    """Run ``sequence``, writing every frame; close the file whatever happens.

    Raises
    ------
    AcquisitionInterrupted
        Ctrl-C on the calling thread (the runner is canceled first).
    AcquisitionError
        The run or the writer failed, or the camera delivered fewer frames than
        ``expected`` without a cancel.
    """
    core = scope.core
    lock = threading.Lock()
    frame_metadata: list[dict[str, Any]] = []
    callback_errors: list[BaseException] = []
    run_errors: list[BaseException] = []

    def on_frame(image: np.ndarray, event: useq.MDAEvent, meta: Any) -> None:
        # acquisition thread: write and record, nothing else
        with lock:
            if writer.closed or callback_errors:
                return
            try:
                record = frame_record(event, meta)
                writer.append(image, record)
                frame_metadata.append(record)
            except BaseException as exc:
                callback_errors.append(exc)
                core.mda.cancel()

    def run() -> None:
        try:
            core.mda.run(sequence)
        except BaseException as exc:
            run_errors.append(exc)

    interrupted = False
    thread = threading.Thread(target=run, name="deepz-acquisition", daemon=True)
    core.mda.events.frameReady.connect(on_frame)
    try:
        thread.start()
        try:
            while thread.is_alive():
                thread.join(_POLL_S)
                if progress is not None:
                    progress(writer.frames_written, expected)
        except KeyboardInterrupt:
            interrupted = True
            core.mda.cancel()
            thread.join()
        canceled = core.mda.status.finish_reason == FinishReason.CANCELED
        with lock:
            if not callback_errors and not run_errors and not interrupted:
                writer.run_metadata["result"] = {
                    "frames": writer.frames_written,
                    "canceled": canceled,
                    "dose_total_J_cm2": dose_total(
                        [m.get("dose_J_cm2") for m in frame_metadata]
                    ),
                }
            writer.close()
    finally:
        core.mda.events.frameReady.disconnect(on_frame)
        with lock:
            writer.close()
        if core.isSequenceRunning():
            core.stopSequenceAcquisition()

    saved = writer.frames_written
    where = _saved_message(saved, writer.path)
    if interrupted:
        raise AcquisitionInterrupted(
            f"Acquisition interrupted after {saved} of {expected} frames; {where}.",
            frames_saved=saved,
            output=writer.path if saved else None,
        )
    if callback_errors or run_errors:
        error = (callback_errors or run_errors)[0]
        raise AcquisitionError(
            f"Acquisition failed after {saved} of {expected} frames "
            f"({_describe(error)}); {where}."
        ) from error
    if saved < expected and not canceled:
        raise AcquisitionError(
            f"The camera delivered only {saved} of {expected} frames; {where}. "
            "Check the log for camera warnings."
        )
    if progress is not None:
        progress(saved, expected)
    return RunResult(saved, frame_metadata, canceled)


def _saved_message(saved: int, path: Path) -> str:
    if saved == 0:
        return "no frames were saved"
    return f"the {saved} frame{'s' if saved != 1 else ''} acquired are saved in {path}"


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
