"""The panel's main window: controls, live volume views, telemetry and errors."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from deepz_live.gui._controls import ControlsWidget
from deepz_live.gui._session import ControllerState, LiveController, SessionFactory
from deepz_live.gui._telemetry import Telemetry, TelemetryWidget
from deepz_live.gui._volume_view import VolumeView
from deepz_live.inference import LIVE_MODEL_NAME

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    from qtpy.QtGui import QCloseEvent

    from deepz_live.gui._settings import LiveSettings

__all__ = ["DeepzPanel", "ErrorBanner"]

_log = logging.getLogger(__name__)


class ErrorBanner(QFrame):
    """A dismissible message strip above the views (hidden while there is no error)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("error_banner")
        self.setStyleSheet(
            "#error_banner { background: #5c1d1d; border: 1px solid #a33; "
            "border-radius: 3px; } QLabel { color: #ffe9e9; }"
        )
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("×")
        close.setToolTip("Dismiss")
        close.clicked.connect(self.clear)
        layout.addWidget(self.label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    @property
    def text(self) -> str:
        """The message shown ("" when hidden)."""
        return self.label.text() if not self.isHidden() else ""

    def show_message(self, message: str) -> None:
        """Show ``message`` (replacing any earlier one)."""
        self.label.setText(message)
        self.show()

    def clear(self) -> None:
        """Hide the banner."""
        self.label.setText("")
        self.hide()


class DeepzPanel(QMainWindow):
    """The deepz live panel.

    Parameters
    ----------
    factory : callable, optional
        ``factory(settings, *, snap) -> session`` that opens a live session (see
        `gui.LiveController`); without one, Start and Snap explain that live
        refocusing is unavailable.
    config : path, optional
        Initial configuration file (default: the simulator).
    model : str
        Initial model.
    use_gl : bool, optional
        Passed to `VolumeView` (None: OpenGL when available).
    rate_hz : float
        Redraws per second at most.
    parent : QWidget, optional
        Qt parent.
    """

    def __init__(
        self,
        factory: SessionFactory | None = None,
        *,
        config: str | Path | None = None,
        model: str = LIVE_MODEL_NAME,
        use_gl: bool | None = None,
        rate_hz: float = 30.0,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("deepz live — virtual volumes")
        self._planes: tuple[float, ...] | None = None

        # -- centre: errors and views ------------------------------------------
        centre = QWidget()
        column = QVBoxLayout(centre)
        column.setContentsMargins(4, 4, 4, 4)
        self.error_banner = ErrorBanner()
        column.addWidget(self.error_banner)
        self.volume_view = VolumeView(use_gl=use_gl)
        column.addWidget(self.volume_view, 1)
        self.setCentralWidget(centre)

        # -- left: run controls and telemetry -------------------------------------
        self.controls = ControlsWidget(config=config, model=model)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.controls)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.telemetry = TelemetryWidget(columns=2)
        side = QWidget()
        side_column = QVBoxLayout(side)
        side_column.setContentsMargins(0, 0, 0, 0)
        side_column.addWidget(scroll, 1)
        side_column.addWidget(self.telemetry)
        dock = QDockWidget("deepz live")
        dock.setObjectName("side_dock")
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        dock.setWidget(side)
        dock.setMinimumWidth(360)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        self.statusBar().showMessage("Ready")

        # -- wiring --------------------------------------------------------------------
        self.controller: LiveController | None = None
        if factory is not None:
            self.controller = LiveController(factory, rate_hz=rate_hz, parent=self)
            c = self.controller
            c.state_changed.connect(self._on_state)
            c.geometry_known.connect(self._on_geometry)
            c.frame_ready.connect(self._on_frame)
            c.volume_ready.connect(self._on_volume)
            c.telemetry_updated.connect(self.telemetry.set_telemetry)
            c.run_started.connect(self._on_started)
            c.run_finished.connect(self._on_finished)
            c.run_failed.connect(self.show_error)
        self.controls.start_requested.connect(self.start)
        self.controls.snap_requested.connect(self.snap)
        self.controls.stop_requested.connect(self.stop)
        self.controls.invalid.connect(self.show_error)
        self.resize(1500, 900)

    # -- public ------------------------------------------------------------------------
    @property
    def error_text(self) -> str:
        """The error message shown ("" when none)."""
        return self.error_banner.text

    def show_error(self, message: str) -> None:
        """Show a readable error message above the views."""
        _log.info("panel error: %s", message)
        self.error_banner.show_message(message)
        self.statusBar().showMessage("Error")

    def clear_error(self) -> None:
        """Hide the error message."""
        self.error_banner.clear()

    def start(self, settings: LiveSettings) -> None:
        """Start a run with ``settings`` (what the Start button does)."""
        self._begin(settings, snap=False)

    def snap(self, settings: LiveSettings) -> None:
        """Take and refocus one frame (what the Snap button does)."""
        self._begin(settings, snap=True)

    def stop(self) -> None:
        """Stop the run (what the Stop button does)."""
        if self.controller is not None:
            self.controller.stop()

    # -- internals ---------------------------------------------------------------------
    def _begin(self, settings: LiveSettings, *, snap: bool) -> None:
        self.clear_error()
        if self.controller is None:
            self.show_error(
                "Live refocusing is not available in this installation (no live "
                "session); the panel can only display."
            )
            return
        try:
            self.controller.start(settings, snap=snap)
        except RuntimeError as error:
            self.show_error(str(error))

    def _on_state(self, state: str) -> None:
        running = state != ControllerState.IDLE
        self.controls.set_running(running)
        if running:
            self.statusBar().showMessage(state.capitalize() + "…")

    def _on_geometry(self, pixel_size_um: float, planes: tuple[float, ...]) -> None:
        self._planes = planes
        self.volume_view.set_pixel_size(pixel_size_um)

    def _on_frame(self, index: int, frame: np.ndarray) -> None:
        self.volume_view.set_frame(frame, index=index)

    def _on_volume(self, index: int, volume: np.ndarray) -> None:
        planes = (
            self._planes if self._planes and len(self._planes) == len(volume) else None
        )
        self.volume_view.set_volume(volume, planes, index=index)

    def _on_started(self, settings: LiveSettings) -> None:
        self.telemetry.set_telemetry(Telemetry())
        self.statusBar().showMessage(f"Running: raw frames to {settings.out}")

    def _on_finished(self, summary: Any) -> None:
        text = "Finished"
        output = getattr(summary, "raw_output", None) or getattr(
            summary, "output", None
        )
        if output is None and isinstance(summary, dict):
            output = summary.get("output")
        if output:
            text += f": saved {output}"
        self.statusBar().showMessage(text)

    def closeEvent(self, event: QCloseEvent) -> None:
        """Stop a run (its files are closed) before the window goes."""
        if self.controller is not None:
            self.controller.close()
        super().closeEvent(event)
