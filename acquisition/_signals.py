"""SIGTERM and SIGHUP stop a run the way Ctrl-C does.

A job scheduler ends a job with SIGTERM, a closed terminal sends SIGHUP; by default
either kills the process at once, leaving a raw file without its OME-XML. While a run
is in progress (`run_sequence`, a `LiveSession` started from the main thread),
`StopSignals` turns the first of them into a `SignalInterrupt`, a `KeyboardInterrupt`
raised on the main thread exactly where Ctrl-C's would be, so the same clean-up runs:
the runner is canceled, the file closed with its metadata, and the run ends with
`AcquisitionTerminated` (exit status ``128 + signal``: 143 for SIGTERM, 129 for
SIGHUP, as a shell reports a process killed by it).

Only the main thread can set signal handlers: elsewhere `StopSignals` does nothing.
The handlers in place before are put back when the run ends (on the main thread); a
signal that arrives once the run has ended, before that, goes to them. Further
signals while the run is stopping are ignored (the stop is under way; Ctrl-C and
SIGKILL still work).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import TYPE_CHECKING, Any

from deepz_live.acquisition._errors import AcquisitionInterrupted

if TYPE_CHECKING:
    from pathlib import Path
    from types import FrameType, TracebackType

    from typing_extensions import Self

__all__ = [
    "STOP_SIGNALS",
    "AcquisitionTerminated",
    "SignalInterrupt",
    "StopSignals",
    "interrupted_error",
    "signal_name",
]

STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)
"""The signals a run turns into a clean stop (SIGHUP does not exist on Windows)."""


class AcquisitionTerminated(AcquisitionInterrupted):
    """A run was stopped by a signal (SIGTERM, SIGHUP); the frames so far are saved.

    Attributes
    ----------
    signal_number : int
        The signal.
    exit_code : int
        ``128 + signal_number``, the exit status a shell reports for it (143 for
        SIGTERM, 129 for SIGHUP).
    """

    def __init__(
        self,
        message: str,
        *,
        signal_number: int,
        frames_saved: int,
        output: Path | None,
    ) -> None:
        super().__init__(message, frames_saved=frames_saved, output=output)
        self.signal_number = int(signal_number)
        self.exit_code = 128 + self.signal_number


class SignalInterrupt(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised on the main thread where Ctrl-C would be."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal_name(signal_number))
        self.signal_number = int(signal_number)


def signal_name(signal_number: int) -> str:
    """``SIGTERM`` for 15, and so on."""
    try:
        return signal.Signals(signal_number).name
    except ValueError:
        return f"signal {signal_number}"


def interrupted_error(
    interrupt: BaseException,
    what: str,
    *,
    frames_saved: int,
    output: Path | None,
    subject: str = "Acquisition",
) -> AcquisitionInterrupted:
    """The error a run stopped by ``interrupt`` ends with.

    Parameters
    ----------
    interrupt : BaseException
        The `KeyboardInterrupt` (Ctrl-C) or `SignalInterrupt` that stopped the run.
    what : str
        How far the run got and what is saved where, e.g. ``"after 3 of 10 frames;
        the 3 frames acquired are saved in run.ome.tif"``.
    frames_saved, output
        As `AcquisitionInterrupted`'s.
    subject : str
        What was stopped, first word of the message.
    """
    number = getattr(interrupt, "signal_number", None)
    if number is None:
        return AcquisitionInterrupted(
            f"{subject} interrupted {what}.", frames_saved=frames_saved, output=output
        )
    return AcquisitionTerminated(
        f"{subject} stopped by {signal_name(number)} {what}.",
        signal_number=number,
        frames_saved=frames_saved,
        output=output,
    )


class StopSignals:
    """While active, the first SIGTERM or SIGHUP raises `SignalInterrupt`.

    `install` (a no-op off the main thread) sets the handlers; `finish` (any thread)
    marks the run as ended, so that later signals go to the previous handlers;
    `restore` (main thread) puts those back. As a context manager it installs on
    entry and restores on exit.
    """

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}
        self._active = False
        self._received: int | None = None

    @property
    def received(self) -> int | None:
        """The signal that stopped the run, if one did."""
        return self._received

    def install(self) -> bool:
        """Set the handlers; False (and nothing set) off the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for number in STOP_SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)
        self._active = True
        return True

    def finish(self) -> None:
        """The run has ended: later signals go to the previous handlers."""
        self._active = False

    def restore(self) -> None:
        """Put the previous handlers back (main thread; a no-op elsewhere)."""
        self._active = False
        if threading.current_thread() is not threading.main_thread():
            return
        for number, previous in list(self._previous.items()):
            # leave a handler someone set after ours in place
            if signal.getsignal(number) == self._handle:
                signal.signal(number, previous)
            del self._previous[number]

    def __enter__(self) -> Self:
        self.install()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.restore()

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self._active:
            if self._received is None:
                self._received = number
                raise SignalInterrupt(number)
            return  # the run is already stopping
        previous = self._previous.get(number, signal.SIG_DFL)
        if callable(previous):
            previous(number, frame)
        elif previous == signal.SIG_DFL:
            # what would have happened without us: the default action
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
