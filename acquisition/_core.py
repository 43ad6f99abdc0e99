"""The Micro-Manager core used by deepz-live.

`DeepzCore` is pymmcore-plus's `UniMMCore` (C++ adapters and Python devices mixed)
with repairs that users would otherwise trip over:

* **Autoshutter for Python shutters.** UniMMCore does not open a Python shutter around a
  Python camera's exposure (pymmcore-plus 0.18), so with autoshutter on, every snap of
  the simulator would be dark. Here `snapImage` and sequence acquisition open the
  current shutter when autoshutter is on and the shutter is a Python device, and close
  it afterwards, as MMCore does for C++ devices.
* **Pixel size of Python optics.** MMCore matches pixel-size presets against C++
  device properties only; with the simulator, `getPixelSizeUm` reports the ``Optics``
  device's value (camera pixel / magnification x binning) when no preset applies. A
  core without simulator devices never imports the simulator for this
  (`acquisition._bench`).
* **Device errors the MDA engine can name.** pymmcore-plus's MDA engine logs a failed
  snap and moves on, and passes a failed focus move on bare. The core remembers the
  error of its latest `snapImage` (`last_snap_error`) and of its latest `setPosition`
  (`last_move_failure`), so that `acquisition.DeepzEngine` can raise an error that
  says which device failed, at which event.
* **Quiet construction.** Without Micro-Manager's C++ adapters installed, constructing a
  core logs "Please run 'mmcore install'" even when only Python devices are used. That
  message is suppressed here; a config that really needs a C++ adapter gets a clear
  error when it is loaded instead (see `acquisition.open_microscope`).
* **psygnal signals inside Qt applications.** pymmcore-plus switches to Qt signals when
  a QApplication exists; the live pipeline needs its frames on the acquisition thread
  whatever the GUI does, so the core always uses psygnal (`psygnal_signals`).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from math import nan
from typing import TYPE_CHECKING, Any, NamedTuple

from pymmcore_plus.experimental.unicore import UniMMCore

from deepz_live.acquisition._bench import simulator_bench

if TYPE_CHECKING:
    from collections.abc import Iterator

_PYMMCORE_LOGGER = "pymmcore-plus"
# pymmcore-plus reads this when it builds a core's and an MDA runner's signals
_SIGNALS_BACKEND_VARIABLE = "PYMM_SIGNALS_BACKEND"


class _DropInstallNagging(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "mmcore install" not in record.getMessage()


@contextmanager
def quiet_adapter_search() -> Iterator[None]:
    """Drop pymmcore-plus's "Please run 'mmcore install'" log record while active."""
    logger = logging.getLogger(_PYMMCORE_LOGGER)
    log_filter = _DropInstallNagging()
    logger.addFilter(log_filter)
    try:
        yield
    finally:
        logger.removeFilter(log_filter)


@contextmanager
def psygnal_signals() -> Iterator[None]:
    """Make pymmcore-plus build psygnal (not Qt) signal classes while active.

    pymmcore-plus picks Qt signals for a core and its MDA runner whenever a
    QApplication exists. Qt-signal callbacks then run on the GUI thread's event
    loop, while the live pipeline must receive every frame on the acquisition
    thread (and keeps working when the GUI thread is busy). Widgets connect to
    our own events with ``thread="main"`` instead.
    """
    previous = os.environ.get(_SIGNALS_BACKEND_VARIABLE)
    os.environ[_SIGNALS_BACKEND_VARIABLE] = "psygnal"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_SIGNALS_BACKEND_VARIABLE, None)
        else:
            os.environ[_SIGNALS_BACKEND_VARIABLE] = previous


class MoveFailure(NamedTuple):
    """A stage move (`DeepzCore.setPosition`) that raised."""

    stage: str
    """Label of the stage."""
    target_um: float
    """Where it was told to go."""
    error: Exception
    """What it raised."""


class DeepzCore(UniMMCore):
    """`UniMMCore` with autoshutter support for Python shutters, no install nag,
    psygnal signals even inside a Qt application (see `psygnal_signals`), the
    simulator's pixel size, and the latest snap and stage errors remembered."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        with quiet_adapter_search(), psygnal_signals():
            super().__init__(*args, **kwargs)
        self._deepz_opened_shutter = False
        self._last_snap_error: Exception | None = None
        self._last_move_failure: MoveFailure | None = None

    def getPixelSizeUm(self, *args: Any, **kwargs: Any) -> float:
        size = super().getPixelSizeUm(*args, **kwargs)
        if size:
            return size
        bench = simulator_bench(self)
        if bench is None or bench.camera is None or bench.optics is None:
            return size
        return bench.camera.pixel_um()

    # -- device errors ---------------------------------------------------------------
    @property
    def last_snap_error(self) -> Exception | None:
        """What the latest `snapImage` raised; None when it succeeded."""
        return self._last_snap_error

    @property
    def last_move_failure(self) -> MoveFailure | None:
        """The latest `setPosition`, when it raised; None when it succeeded."""
        return self._last_move_failure

    def setPosition(self, *args: Any) -> None:
        self._last_move_failure = None
        try:
            super().setPosition(*args)
        except Exception as exc:
            stage = str(args[0]) if len(args) > 1 else self.getFocusDevice()
            target = args[-1] if args and isinstance(args[-1], (int, float)) else nan
            self._last_move_failure = MoveFailure(stage, float(target), exc)
            raise

    # -- autoshutter for Python shutters -------------------------------------------
    def _python_autoshutter(self) -> str | None:
        """Label of the shutter we must drive ourselves, or None."""
        shutter = self.getShutterDevice()
        if shutter and self.getAutoShutter() and self.isPyDevice(shutter):
            return shutter
        return None

    def _open_for_exposure(self) -> bool:
        shutter = self._python_autoshutter()
        if shutter is None or self.getShutterOpen(shutter):
            return False
        self.setShutterOpen(shutter, True)
        return True

    def _close_after_exposure(self) -> None:
        shutter = self._python_autoshutter()
        if shutter is not None:
            self.setShutterOpen(shutter, False)

    def snapImage(self, *args: Any, **kwargs: Any) -> None:
        self._last_snap_error = None
        try:
            opened = self._open_for_exposure()
            try:
                super().snapImage(*args, **kwargs)
            finally:
                if opened:
                    self._close_after_exposure()
        except Exception as exc:
            self._last_snap_error = exc
            raise

    def startSequenceAcquisition(self, *args: Any, **kwargs: Any) -> None:
        self._start_stream(super().startSequenceAcquisition, *args, **kwargs)

    def startContinuousSequenceAcquisition(self, *args: Any, **kwargs: Any) -> None:
        self._start_stream(super().startContinuousSequenceAcquisition, *args, **kwargs)

    def _start_stream(self, start: Any, *args: Any, **kwargs: Any) -> None:
        """Open the shutter for a stream, then start it; close it again on failure."""
        self._deepz_opened_shutter = self._open_for_exposure() or (
            self._deepz_opened_shutter
        )
        try:
            start(*args, **kwargs)
        except BaseException:
            self._release_sequence_shutter()
            raise

    def stopSequenceAcquisition(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().stopSequenceAcquisition(*args, **kwargs)
        finally:
            self._release_sequence_shutter()

    def _release_sequence_shutter(self) -> None:
        if self._deepz_opened_shutter:
            self._deepz_opened_shutter = False
            self._close_after_exposure()
