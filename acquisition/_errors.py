"""Exceptions raised by deepz-live.

Every message names the problem *and* what to do about it, so that the command line
can print it as one readable line without a traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from deepz_live.acquisition._live_stats import LiveSummary

__all__ = [
    "AcquisitionError",
    "AcquisitionInterrupted",
    "ConfigError",
    "DeepzError",
    "LiveRunError",
    "OutputLocationError",
]


class DeepzError(Exception):
    """Base class of every error deepz-live raises on purpose."""


class ConfigError(DeepzError):
    """A Micro-Manager configuration cannot be loaded or lacks a required device."""


class AcquisitionError(DeepzError):
    """An acquisition was refused, failed or was interrupted.

    When frames had already been written, the message says how many and where.
    """


class OutputLocationError(DeepzError):
    """The output location cannot take the run (missing, unwritable, full, exists)."""


class AcquisitionInterrupted(AcquisitionError):
    """The user interrupted an acquisition (Ctrl-C); the frames so far are saved.

    Attributes
    ----------
    frames_saved : int
        Frames written before the interruption.
    output : pathlib.Path or None
        The file holding them (None when no frame was taken).
    """

    def __init__(self, message: str, *, frames_saved: int, output: Path | None) -> None:
        super().__init__(message)
        self.frames_saved = frames_saved
        self.output = output


class LiveRunError(AcquisitionError):
    """A live refocusing run stopped on an error.

    The message says what happened and what is saved where.

    Attributes
    ----------
    summary : LiveSummary or None
        The figures of the run up to the error (frames and volumes saved, files).
    """

    def __init__(self, message: str, *, summary: LiveSummary | None = None) -> None:
        super().__init__(message)
        self.summary = summary
