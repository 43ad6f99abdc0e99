"""A live session's events (`LiveEvents`) and the thread that emits them (`EventPump`).

The acquisition thread and the worker never call a listener of ``frame_acquired``,
``stats_updated`` or the lifecycle events themselves: they post them to the pump,
whose own thread (``deepz-events``) emits them in the order posted, and
``stats_updated`` about 10 times a second besides. A slow listener thus delays other
listeners, never the camera. ``volume_ready`` is the exception: the worker emits it
itself (`EventPump.emit`), so that a listener that holds on to volumes slows the
worker, and iterators and the volume file see the same order.

At most 8 ``frame_acquired`` notifications wait; beyond that the oldest waiting one
is dropped and counted (`EventPump.frame_events_dropped`). Lifecycle events are never
dropped. The pump ends after the terminal event (``run_finished`` or ``run_failed``),
which follows a last ``stats_updated``. A listener that raises is logged and does not
stop the run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from psygnal import Signal, SignalGroup

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

__all__ = ["EventPump", "LiveEvents"]

_log = logging.getLogger(__name__)

_STATS_PERIOD_S = 0.1
_MAX_PENDING_FRAME_EVENTS = 8


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


class EventPump:
    """Emits a `LiveEvents` group's events on one thread of its own, in order.

    Parameters
    ----------
    events : LiveEvents
        The signals to emit.
    stats : callable
        ``stats()`` returns the snapshot that ``stats_updated`` carries.
    """

    def __init__(self, events: LiveEvents, stats: Callable[[], Any]) -> None:
        self.events = events
        self._stats = stats
        self._cond = threading.Condition()
        self._pending: deque[tuple[str, tuple[Any, ...]]] = deque()
        self._pending_frames = 0
        self._frames_dropped = 0
        self._terminal: tuple[str, tuple[Any, ...]] | None = None
        self.done = threading.Event()
        """Set once the terminal event was emitted (or the pump's thread ended)."""

    @property
    def frame_events_dropped(self) -> int:
        """``frame_acquired`` notifications dropped for a slow listener."""
        with self._cond:
            return self._frames_dropped

    def post(self, name: str, *args: Any) -> None:
        """Queue ``events.<name>.emit(*args)``; never dropped."""
        with self._cond:
            self._pending.append((name, args))
            self._cond.notify_all()

    def post_frame(self, index: int, frame: np.ndarray) -> None:
        """Queue ``frame_acquired`` if anyone listens; beyond the limit, drop the
        oldest waiting one."""
        if not len(self.events.frame_acquired):
            return
        with self._cond:
            if self._pending_frames >= _MAX_PENDING_FRAME_EVENTS:
                for item in self._pending:
                    if item[0] == "frame_acquired":
                        self._pending.remove(item)
                        self._pending_frames -= 1
                        break
                self._frames_dropped += 1
            self._pending.append(("frame_acquired", (index, frame)))
            self._pending_frames += 1
            self._cond.notify_all()

    def post_terminal(self, name: str, *args: Any) -> None:
        """The last event: emitted after everything posted and a last stats update."""
        with self._cond:
            self._terminal = (name, args)
            self._cond.notify_all()

    def run(self) -> None:
        """The events thread: emit what is posted until the terminal event."""
        next_stats = 0.0
        try:
            while True:
                with self._cond:
                    if not self._pending and self._terminal is None:
                        self._cond.wait(_STATS_PERIOD_S)
                    items = list(self._pending)
                    self._pending.clear()
                    self._pending_frames = 0
                    terminal = self._terminal
                for name, args in items:
                    self.emit(name, *args)
                now = time.perf_counter()
                if terminal is not None:
                    with self._cond:
                        if self._pending:  # posted while we emitted: go round again
                            continue
                    self.emit("stats_updated", self._stats())
                    self.emit(terminal[0], *terminal[1])
                    return
                if now >= next_stats:
                    next_stats = now + _STATS_PERIOD_S
                    self.emit("stats_updated", self._stats())
        finally:
            self.done.set()

    def emit(self, name: str, *args: Any) -> None:
        """Emit ``events.<name>`` now, on the calling thread; log a listener's error."""
        try:
            getattr(self.events, name).emit(*args)
        except Exception:
            _log.exception("A listener of LiveSession.events.%s raised", name)
