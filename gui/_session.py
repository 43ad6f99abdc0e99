"""The one adapter between the panel and a live session (acquisition + refocusing).

Threading contract
------------------
- The session acquires and refocuses in its own threads and reports through a psygnal
  ``events`` group. Its callbacks here run in those threads and only store a reference
  (`LatestOnlyThrottle.offer`) or post a queued Qt signal: they never touch a widget and
  never wait, so the panel cannot slow acquisition.
- Opening a session (loading a configuration and a model can take seconds) happens in
  a worker thread too; the outcome comes back to the main thread as a Qt signal.
- The main thread receives frames, volumes and stats at most ~30 times a second, newest
  only; run_finished / run_failed arrive as queued Qt signals after a last flush, so the
  final volume of a run is always shown.

Everything that depends on the live session's exact names lives in this module:
`LiveSessionLike` (what is expected), `SESSION_EVENTS` (signal names) and the helpers
that read the pixel size and the core.

The controller has its own `ControllerState`, not the session's `LiveState`: it runs
many sessions one after another and returns to ``idle`` after each (a session ends in
``finished``, ``stopped`` or ``failed`` and is never reused); it is ``starting`` while
the microscope and the model open, before any session exists; and it is ``stopping``
from the Stop button until the session's end report, a state a session does not
have. Its ``running`` covers the session's ``starting``, ``acquiring`` and
``catching_up``: the panel offers the same buttons in all three.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from qtpy.QtCore import QObject, QTimer, Signal

from deepz_live.gui._settings import LiveSettings, SettingsError
from deepz_live.gui._telemetry import Telemetry
from deepz_live.gui._throttle import LatestOnlyThrottle

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "SESSION_EVENTS",
    "ControllerState",
    "LiveController",
    "LiveSessionLike",
    "SessionFactory",
    "describe_error",
]

_log = logging.getLogger(__name__)


class ControllerState(str, Enum):
    """Where a `LiveController` is; compares equal to (and prints as) its value."""

    IDLE = "idle"
    """No run: Start and Snap are offered."""
    STARTING = "starting"
    """Opening the microscope and the model, then starting the session."""
    RUNNING = "running"
    """The session runs (setting up, acquiring or catching up)."""
    STOPPING = "stopping"
    """Stop was asked for; waiting for the session's end report."""

    def __str__(self) -> str:  # the value, as enum.StrEnum (Python ≥ 3.11) does
        return str(self.value)


@runtime_checkable
class LiveSessionLike(Protocol):
    """What the panel needs from a live session.

    ``events`` is a psygnal ``SignalGroup`` with (any subset of) the signals in
    `SESSION_EVENTS`; arrays handed to ``frame_acquired`` / ``volume_ready`` must not
    be overwritten afterwards (the panel may draw them later, from another thread).
    ``start`` and ``stop`` return at once; ``stats`` returns a snapshot (a mapping or
    an object with attributes; see `Telemetry.from_stats` for the names read).
    """

    events: Any

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def wait(self, timeout: float | None = None) -> Any: ...

    def stats(self) -> Any: ...


SessionFactory = Callable[..., LiveSessionLike]
"""``factory(settings, *, snap: bool) -> session``: opens the microscope and the model
for ``settings`` (raising a readable error for a bad config or model); with
``snap=True`` the session takes one frame, refocuses it and saves nothing."""

SESSION_EVENTS: dict[str, str] = {
    "frame_acquired": "_on_frame",  # (index: int, frame: ndarray (Y, X))
    "volume_ready": "_on_volume",  # (index: int, volume: ndarray (N, Y, X) float32)
    "stats_updated": "_on_stats",  # (stats,)
    "run_finished": "_on_finished",  # (summary,)
    "run_failed": "_on_failed",  # (message: str,)
}
"""Session signal name -> the adapter's handler."""


def describe_error(error: BaseException) -> str:
    """One readable message for the user (the traceback goes to the log)."""
    from deepz_live.acquisition import DeepzError
    from deepz_live.inference import InferenceError

    if isinstance(error, (DeepzError, InferenceError, SettingsError)):
        text = str(error)
    elif isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        text = f"{error.strerror}{where}"
    else:
        text = (
            f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        )
    return text.strip() or type(error).__name__


def session_pixel_size_um(session: Any) -> float | None:
    """The sample-plane pixel size a session reports, if it does."""
    value = getattr(session, "pixel_size_um", None)
    if callable(value):
        value = value()
    if value is None:
        core = session_core(session)
        if core is not None:
            try:
                value = core.getPixelSizeUm()
            except Exception:  # a core that cannot tell: fall back to 1 µm
                value = None
    return float(value) if value else None


def session_core(session: Any) -> Any:
    """The pymmcore-plus core behind a session, if it exposes one."""
    for owner in (
        session,
        getattr(session, "scope", None),
        getattr(session, "microscope", None),
    ):
        core = getattr(owner, "core", None) if owner is not None else None
        if core is not None:
            return core
    return None


class LiveController(QObject):
    """Drives one live session at a time for the panel; all signals in the main thread.

    Parameters
    ----------
    factory : callable
        ``factory(settings, *, snap) -> session`` (see `SessionFactory`).
    rate_hz : float
        At most this many redraws per second (newest data only).
    stats_poll_hz : float
        How often ``session.stats()`` is read while running (besides ``stats_updated``).
    parent : QObject, optional
        Qt parent.
    """

    state_changed = Signal(str)
    """The new `ControllerState`, as its string value."""
    run_started = Signal(object)
    """The `LiveSettings` of a run that started."""
    frame_ready = Signal(int, object)
    """Newest raw frame (index, frame), ≤ rate_hz per second."""
    volume_ready = Signal(int, object)
    """Newest volume (index, volume), ≤ rate_hz per second."""
    telemetry_updated = Signal(object)
    """Newest `Telemetry`."""
    geometry_known = Signal(float, object)
    """(pixel size µm, planes µm tuple) of the run that started."""
    core_available = Signal(object)
    """The session's pymmcore-plus core, when a run starts."""
    run_finished = Signal(object)
    """The session's summary (after the last frame and volume were delivered)."""
    run_failed = Signal(str)
    """A readable message (a bad config, a missing model, a device error...)."""

    # worker threads -> main thread (queued connections)
    _opened = Signal(object, object)
    _open_failed = Signal(str)
    _finished_from_worker = Signal(object)
    _failed_from_worker = Signal(str)

    def __init__(
        self,
        factory: SessionFactory,
        *,
        rate_hz: float = 30.0,
        stats_poll_hz: float = 4.0,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._factory = factory
        self._session: Any = None
        self._settings: LiveSettings | None = None
        self._state = ControllerState.IDLE
        self._run_id = 0
        self.throttle = LatestOnlyThrottle(rate_hz, parent=self)
        self.throttle.subscribe("frame", lambda v: self.frame_ready.emit(*v))
        self.throttle.subscribe("volume", lambda v: self.volume_ready.emit(*v))
        self.throttle.subscribe("stats", self._deliver_stats)
        self._poll = QTimer(self)
        self._poll.setInterval(max(1, round(1000 / stats_poll_hz)))
        self._poll.timeout.connect(self._poll_stats)
        self._opened.connect(self._on_opened)
        self._open_failed.connect(self._end_failed)
        self._finished_from_worker.connect(self._end_finished)
        self._failed_from_worker.connect(self._end_failed)

    # -- commands ----------------------------------------------------------------------
    @property
    def state(self) -> ControllerState:
        """``idle``, ``starting``, ``running`` or ``stopping``."""
        return self._state

    @property
    def session(self) -> Any:
        """The current session (None when idle)."""
        return self._session

    def start(self, settings: LiveSettings, *, snap: bool = False) -> None:
        """Open a session for ``settings`` in a worker thread and start it."""
        if self._state != ControllerState.IDLE:
            raise RuntimeError(f"a run is already {self._state}")
        self._run_id += 1
        self._settings = settings
        self.throttle.clear()
        self._set_state(ControllerState.STARTING)
        thread = threading.Thread(
            target=self._open,
            args=(settings, snap, self._run_id),
            daemon=True,
            name="deepz-panel-open",
        )
        thread.start()

    def snap(self, settings: LiveSettings) -> None:
        """One frame, refocused; nothing saved."""
        self.start(settings, snap=True)

    def stop(self) -> None:
        """Ask the running session to stop (returns at once)."""
        if self._state not in (ControllerState.RUNNING, ControllerState.STARTING):
            return
        self._set_state(ControllerState.STOPPING)
        if self._session is None:  # still opening: stopped once it has opened
            return
        try:
            self._session.stop()
        except Exception as error:
            _log.exception("stopping the session failed")
            self._end_failed(describe_error(error))

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop any run and wait for it (when the window closes)."""
        session = self._session
        self.throttle.stop()
        self._poll.stop()
        if session is None:
            return
        try:
            session.stop()
            session.wait(timeout_s)
        except Exception:
            _log.exception("closing the session failed")
        self._detach(session)
        self._session = None
        self._run_id += 1  # a session still opening is stopped when it arrives

    # -- worker side (any thread) ------------------------------------------------------
    def _open(self, settings: LiveSettings, snap: bool, run_id: int) -> None:
        try:
            session = self._factory(settings, snap=snap)
            self._attach(session)
        except Exception as error:
            _log.exception("could not open the run")
            self._open_failed.emit(describe_error(error))
            return
        # queued before anything the session emits once started: order is kept
        self._opened.emit(session, run_id)
        try:
            session.start()
        except Exception as error:
            _log.exception("could not start the run")
            self._failed_from_worker.emit(describe_error(error))

    def _on_frame(self, index: int, frame: np.ndarray) -> None:
        self.throttle.offer("frame", (int(index), frame))

    def _on_volume(self, index: int, volume: np.ndarray) -> None:
        self.throttle.offer("volume", (int(index), volume))

    def _on_stats(self, stats: Any) -> None:
        self.throttle.offer("stats", stats)

    def _on_finished(self, summary: Any = None) -> None:
        self._finished_from_worker.emit(summary)

    def _on_failed(self, message: Any = "") -> None:
        if isinstance(message, BaseException):
            message = describe_error(message)
        self._failed_from_worker.emit(str(message) or "The run failed.")

    def _attach(self, session: Any) -> None:
        events = getattr(session, "events", None)
        for name, handler in SESSION_EVENTS.items():
            signal = getattr(events, name, None)
            if signal is not None:
                signal.connect(getattr(self, handler))

    def _detach(self, session: Any) -> None:
        events = getattr(session, "events", None)
        for name, handler in SESSION_EVENTS.items():
            signal = getattr(events, name, None)
            if signal is not None:
                try:
                    signal.disconnect(getattr(self, handler))
                except Exception:  # never connected, or already gone
                    pass

    # -- main thread -------------------------------------------------------------------
    def _on_opened(self, session: Any, run_id: int) -> None:
        if run_id != self._run_id:  # a window closed meanwhile, or similar: let it go
            session.stop()
            return
        self._session = session
        assert self._settings is not None
        pixel = session_pixel_size_um(session)
        self.geometry_known.emit(pixel or 1.0, tuple(self._settings.planes_um))
        self.core_available.emit(session_core(session))
        if self._state == ControllerState.STOPPING:  # Stop pressed while it opened
            session.stop()
        else:
            self._set_state(ControllerState.RUNNING)
        self._poll.start()
        self.run_started.emit(self._settings)

    def _poll_stats(self) -> None:
        session = self._session
        if session is None or not hasattr(session, "stats"):
            return
        try:
            stats = session.stats()
        except Exception:
            _log.debug("stats() failed", exc_info=True)
            return
        if stats is not None:
            self._deliver_stats(stats)

    def _deliver_stats(self, stats: Any) -> None:
        planes = len(self._settings.planes_um) if self._settings is not None else None
        telemetry = Telemetry.from_stats(stats, planes_per_volume=planes)
        self.telemetry_updated.emit(
            telemetry.with_redraw_rate(self.throttle.redraw_rate_hz())
        )

    def _end_finished(self, summary: Any) -> None:
        if self._state == ControllerState.IDLE:  # a second end report of the run
            return
        self._end()
        self.run_finished.emit(summary)

    def _end_failed(self, message: str) -> None:
        if self._state == ControllerState.IDLE:
            _log.warning("run failed after it ended: %s", message)
            return
        self._end()
        self.run_failed.emit(message)

    def _end(self) -> None:
        self._poll.stop()
        self._poll_stats()  # final numbers
        self.throttle.flush()  # the last frame and volume are shown
        session, self._session = self._session, None
        if session is not None:
            self._detach(session)
            close = getattr(session, "close", None)
            if callable(close):  # joins the session's threads: not on the GUI thread
                threading.Thread(
                    target=close, daemon=True, name="deepz-panel-close"
                ).start()
        self._set_state(ControllerState.IDLE)

    def _set_state(self, state: ControllerState) -> None:
        if state != self._state:
            self._state = state
            self.state_changed.emit(state.value)
