"""Qt tests of the panel: headless (Qt's offscreen platform) unless told otherwise.

The whole folder is skipped, with the reason in the summary, when the GUI extra is not
installed (``pip install -e ".[gui]"``). ``QT_QPA_PLATFORM`` is only defaulted: run
``QT_QPA_PLATFORM=xcb xvfb-run -a pytest tests/gui`` to include the OpenGL tests.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
import time
from typing import Any

import numpy as np
import pytest
from psygnal import Signal, SignalGroup

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


_REQUIREMENTS = {
    "qtpy.QtWidgets": "a Qt binding (PySide6)",
    "pytestqt": "pytest-qt",
    "vispy.scene": "vispy",
    "superqt": "superqt",
    "cmap": "cmap",
}


def _missing_gui_requirement() -> str | None:
    missing = []
    for module, package in _REQUIREMENTS.items():
        if importlib.util.find_spec(module.split(".")[0]) is None:
            missing.append(package)
    if missing:
        return f"not installed: {', '.join(missing)}"
    try:  # qtpy is there: is a binding?
        importlib.import_module("qtpy.QtWidgets")
    except ImportError as error:
        return f"no Qt binding ({error})"
    return None


MISSING = _missing_gui_requirement()

if MISSING:
    collect_ignore_glob = ["test_*.py"]

    def pytest_report_header(config):
        return (
            f"tests/gui skipped: {MISSING}; install with  pip install -e '.[gui-test]'"
        )

    def pytest_terminal_summary(terminalreporter):
        terminalreporter.write_line(
            f"SKIPPED tests/gui (the Qt panel): {MISSING}; "
            "install with  pip install -e '.[gui-test]'"
        )


# -- a stand-in live session ----------------------------------------------------------


class FakeSessionEvents(SignalGroup):
    frame_acquired = Signal(int, object)
    volume_ready = Signal(int, object)
    stats_updated = Signal(object)
    run_finished = Signal(object)
    run_failed = Signal(str)


class FakeSession:
    """Acquires frames in a thread as a live session does, refocusing each one.

    ``frame_source(index) -> (Y, X) array`` makes the frames (default: a bright spot
    that moves with the index); the "volume" is the frame scaled per plane, so every
    new frame gives a different volume. ``fail_at`` makes frame ``fail_at`` raise as a
    camera that drops off the bus would; the session then reports ``run_failed``.
    """

    def __init__(
        self,
        settings: Any,
        *,
        snap: bool = False,
        frame_source: Any = None,
        fail_at: int | None = None,
        period_s: float = 0.005,
        shape: tuple[int, int] = (32, 40),
    ) -> None:
        self.events = FakeSessionEvents()
        self.settings = settings
        self.frames = 1 if snap else settings.frames
        self.planes = np.asarray(settings.planes_um, dtype=np.float32)
        self.frame_source = frame_source or self._moving_spot
        self.fail_at = fail_at
        self.period_s = period_s
        self.shape = shape
        self.pixel_size_um = 0.5
        self.started = self.stopped = self.closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._count = 0
        self._t0 = 0.0
        self.thread_names: set[str] = set()

    def _moving_spot(self, index: int) -> np.ndarray:
        frame = np.full(self.shape, 100, np.uint16)
        frame[index % self.shape[0], (3 * index) % self.shape[1]] = 1000 + index
        return frame

    def start(self) -> None:
        self.started = True
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="fake-acq", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.thread_names.add(threading.current_thread().name)
        try:
            index = 0
            while not self._stop.is_set() and (
                self.frames is None or index < self.frames
            ):
                if self.fail_at is not None and index == self.fail_at:
                    raise RuntimeError("camera lost connection")
                frame = self.frame_source(index)
                self.events.frame_acquired.emit(index, frame)
                weights = 1.0 + 0.1 * np.abs(self.planes)[:, None, None]
                volume = (frame[None].astype(np.float32) / weights).astype(np.float32)
                self.events.volume_ready.emit(index, volume)
                self._count = index + 1
                self.events.stats_updated.emit(self.stats())
                index += 1
                time.sleep(self.period_s)
        except Exception as error:
            self.closed = True  # a real session closes its files first
            self.events.run_failed.emit(f"Device error: {error}")
            return
        self.closed = True
        self.events.run_finished.emit({"frames": self._count, "output": None})

    def stop(self) -> None:
        self.stopped = True
        self._stop.set()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def stats(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        return {
            "frames": self._count,
            "volumes": self._count,
            "fps": self._count / elapsed,
            "volumes_per_s": self._count / elapsed,
            "latency_p50_ms": 1.5,
            "latency_p99_ms": 3.0,
            "skipped": 0,
            "queue_depth": 0,
            "dose_per_frame_J_cm2": 2e-3,
            "cumulative_dose_J_cm2": 2e-3 * self._count,
        }


@pytest.fixture
def fake_sessions():
    """A factory of `FakeSession` that keeps every session it made (``.made``)."""

    class Factory:
        def __init__(self) -> None:
            self.made: list[FakeSession] = []
            self.options: dict[str, Any] = {}

        def __call__(self, settings: Any, *, snap: bool = False) -> FakeSession:
            session = FakeSession(settings, snap=snap, **self.options)
            self.made.append(session)
            return session

    factory = Factory()
    yield factory
    for session in factory.made:
        session.stop()
        session.wait(5)
