"""Hand the newest data from worker threads to the Qt main thread, ~30 times a second.

Workers call `LatestOnlyThrottle.offer` from any thread: it stores a reference under a
lock and returns (microseconds; nothing slow in an acquisition callback). A QTimer in
the main thread takes the newest value of each kind and calls its drawing function once.
Older values that were never drawn are dropped and counted: redraws never queue up, so
a slow redraw (software OpenGL, a rotating 3-D view) can lower the redraw rate but never
the acquisition rate.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QObject, QTimer

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["LatestOnlyThrottle"]

_EMPTY = object()


class LatestOnlyThrottle(QObject):
    """Deliver only the newest offered value of each kind, at most ``rate_hz`` per s.

    Parameters
    ----------
    rate_hz : float
        Deliveries per second at most (default 30).
    parent : QObject, optional
        Qt parent.

    Examples
    --------
    >>> throttle = LatestOnlyThrottle()                      # doctest: +SKIP
    >>> throttle.subscribe("volume", view.set_volume_data)   # doctest: +SKIP
    >>> throttle.offer("volume", volume)  # from any thread  # doctest: +SKIP
    """

    def __init__(self, rate_hz: float = 30.0, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._pending: dict[str, Any] = {}
        self._callbacks: dict[str, Callable[[Any], None]] = {}
        self.offered: dict[str, int] = {}
        self.delivered: dict[str, int] = {}
        self._delivery_times: list[float] = []
        self._timer = QTimer(self)
        self._timer.setInterval(max(1, round(1000.0 / rate_hz)))
        self._timer.timeout.connect(self.flush)
        self._timer.start()

    @property
    def interval_ms(self) -> int:
        """Time between deliveries."""
        return int(self._timer.interval())

    def subscribe(self, kind: str, callback: Callable[[Any], None]) -> None:
        """Call ``callback(value)`` in the main thread with the newest ``kind``."""
        self._callbacks[kind] = callback

    def offer(self, kind: str, value: Any) -> None:
        """Store ``value`` as the newest ``kind``; any thread, never blocks."""
        with self._lock:
            self._pending[kind] = value
            self.offered[kind] = self.offered.get(kind, 0) + 1

    def dropped(self, kind: str) -> int:
        """Values of ``kind`` that were replaced by newer ones before being drawn."""
        with self._lock:
            waiting = 1 if kind in self._pending else 0
            return self.offered.get(kind, 0) - self.delivered.get(kind, 0) - waiting

    def redraw_rate_hz(self, window_s: float = 2.0) -> float:
        """Deliveries per second over the last ``window_s`` seconds."""
        now = time.monotonic()
        recent = [t for t in self._delivery_times if now - t <= window_s]
        self._delivery_times = recent
        return len(recent) / window_s

    def clear(self) -> None:
        """Forget values not delivered yet (e.g. when a new run starts)."""
        with self._lock:
            self._pending.clear()

    def flush(self) -> None:
        """Deliver the newest pending value of each kind now (the timer calls this)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        for kind, value in pending.items():
            callback = self._callbacks.get(kind)
            if callback is None:
                continue
            self.delivered[kind] = self.delivered.get(kind, 0) + 1
            callback(value)
        self._delivery_times.append(time.monotonic())

    def stop(self) -> None:
        """Stop the timer (pending values stay until `flush` or `clear`)."""
        self._timer.stop()
