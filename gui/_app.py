"""Running the panel: the live-session factory and the entry point the CLI calls.

`MicroscopeSessions` is the panel's `SessionFactory` for the real pipeline: it opens
the microscope of the settings' configuration file (and keeps it open between runs,
so that Start is quick), and builds a `deepz.live_refocus` session for each run.
`run_panel` opens the window (``deepz gui``, ``deepz demo``) or runs it unattended
for a screenshot.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepz_live.acquisition import DeepzError
from deepz_live.inference import LIVE_MODEL_NAME

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from deepz_live.acquisition import Microscope
    from deepz_live.gui._settings import LiveSettings

__all__ = [
    "CONTINUOUS_MAX_FRAMES",
    "MicroscopeSessions",
    "PanelError",
    "display_problem",
    "run_panel",
]

_log = logging.getLogger(__name__)

CONTINUOUS_MAX_FRAMES = 100_000
"""A "continuous" run is this many frames at most (fewer if the disk is smaller);
the raw file has to be sized up front, and Stop ends the run early cleanly."""

_DISK_SHARE = 0.8  # of the free space that a continuous run may plan to use


class MicroscopeSessions:
    """Opens live sessions for the panel (`gui.SessionFactory`).

    Parameters
    ----------
    roi : int
        Centred square camera region in pixels (0: the full sensor); smaller frames
        refocus faster on a CPU.
    device : str
        Refocuser device (``"auto"``: CUDA when available, else CPU).
    """

    def __init__(self, *, roi: int = 0, device: str = "auto") -> None:
        self.roi = roi
        self.device = device
        self._scope: Microscope | None = None
        self._lock = threading.Lock()

    @property
    def scope(self) -> Microscope | None:
        """The microscope kept open (None before the first run)."""
        return self._scope

    def __call__(self, settings: LiveSettings, *, snap: bool = False) -> Any:
        """A `deepz.LiveSession` for ``settings``, not started yet.

        Raises
        ------
        acquisition.ConfigError, inference.InferenceError, acquisition.AcquisitionError
            With messages written for the user (shown by the panel).
        """
        from deepz_live.live import live_refocus

        scope = self._scope_for(Path(settings.config))
        if snap:
            folder = Path(tempfile.mkdtemp(prefix="deepz-snap-"))
            out, frames = folder / "snap.ome.tif", 1
        else:
            folder, out = None, Path(settings.out)
            frames = settings.frames or self._continuous_frames(scope, settings)
        session = live_refocus(
            scope,
            settings,
            frames=frames,
            out=out,
            save_volumes=settings.save_volumes and not snap,
            device=self.device,
            start=False,
        )
        if folder is not None:  # a snap saves nothing: its file goes when it ends

            def remove(*_: Any) -> None:
                shutil.rmtree(folder, ignore_errors=True)

            session.events.run_finished.connect(remove)
            session.events.run_failed.connect(remove)
        return session

    def close(self) -> None:
        """Close the microscope (when the panel closes)."""
        with self._lock:
            scope, self._scope = self._scope, None
        if scope is not None:
            scope.close()

    # -- internals ---------------------------------------------------------------------
    def _scope_for(self, config: Path) -> Microscope:
        from deepz_live.acquisition import open_microscope

        # DeepzCore keeps psygnal signals inside a QApplication (acquisition._core)
        with self._lock:
            scope = self._scope
            if scope is not None and not scope.closed:
                if scope.config_path.resolve() == config.resolve():
                    return scope
                scope.close()  # another configuration: open that one instead
                self._scope = None
            scope = open_microscope(config)
            try:
                if self.roi:
                    _centred_roi(scope, self.roi)
                scope.focus_on_specimen()  # the simulator: its centre plane
            except Exception:
                scope.close()
                raise
            self._scope = scope
            return scope

    @staticmethod
    def _continuous_frames(scope: Microscope, settings: LiveSettings) -> int:
        core = scope.core
        pixels = core.getImageWidth() * core.getImageHeight()
        per_frame = pixels * max(core.getBytesPerPixel(), 1)
        if settings.save_volumes:
            per_frame += pixels * 4 * len(settings.planes_um)
        folder = Path(settings.out).expanduser().absolute().parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        free = shutil.disk_usage(folder).free
        return max(1, min(CONTINUOUS_MAX_FRAMES, int(_DISK_SHARE * free / per_frame)))


def _centred_roi(scope: Microscope, size: int) -> None:
    core = scope.core
    width, height = core.getImageWidth(), core.getImageHeight()
    size = min(size, width, height)
    core.setROI((width - size) // 2, (height - size) // 2, size, size)


def display_problem() -> str | None:
    """Why Qt could not open a window here, or None when it can.

    On Linux without ``DISPLAY`` (or ``WAYLAND_DISPLAY``) Qt aborts the process with
    a screenful of plugin messages; this says it in one line first. A platform chosen
    with ``QT_QPA_PLATFORM`` (``offscreen``, ``xcb`` under Xvfb...) is left to Qt.
    """
    if os.environ.get("QT_QPA_PLATFORM") or not sys.platform.startswith("linux"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return (
        "No display to open the panel on (DISPLAY is not set): run it on a desktop, "
        "over ssh -X, or under Xvfb (xvfb-run -a deepz gui)."
    )


def run_panel(
    config: str | Path | None = None,
    model: str | None = None,
    demo: bool = False,
    screenshot: str | Path | None = None,
    frames: int | None = None,
    *,
    roi: int = 0,
    timeout_s: float = 600.0,
    settings: Mapping[str, Any] | None = None,
) -> int:
    """Open the deepz panel; return the process exit status.

    Parameters
    ----------
    config : path, optional
        Micro-Manager configuration (default: the simulator).
    model : str, optional
        Bundled model name or model file (default: `LIVE_MODEL_NAME`).
    demo : bool
        The simulator, ready to press Start (with ``model``, or the live model).
        Leave ``config`` out: the demo runs on the simulator.
    screenshot : path, optional
        Run ``frames`` frames unattended, save a PNG of the window here and return
        (the OpenGL views need a display with OpenGL, e.g. ``xvfb-run -a``; without
        one the PNG shows the panel with a note in place of the views, and a warning
        is printed).
    frames : int, optional
        Frames per run (default 100; 20 for a screenshot).
    roi : int
        Centred square camera region in pixels (0: full sensor).
    timeout_s : float
        A screenshot run that has not finished by then is stopped.
    settings : mapping, optional
        Initial values of other `LiveSettings` fields (``interval_ms``,
        ``planes_um`` evenly spaced, ``policy``, ``backend``, ``output``,
        ``save_volumes``, ``exposure_ms``, ``led_intensity``).

    Returns
    -------
    int
        0 (or the Qt event loop's exit status when the window was closed).

    Raises
    ------
    gui.QtMissingError
        No Qt binding (or another GUI package) is installed: the message is the
        install hint.
    PanelError
        No display to open the window on, settings the panel cannot show, or a
        screenshot run that failed (the screenshot is saved first: it shows the
        error).
    """
    from qtpy.QtWidgets import QApplication

    from deepz_live.gui._main_window import DeepzPanel

    app = QApplication.instance()
    if app is None:
        problem = display_problem()
        if problem is not None and screenshot is None:
            raise PanelError(problem)
        if problem is not None:  # a screenshot still shows controls and telemetry
            os.environ["QT_QPA_PLATFORM"] = "offscreen"
        app = QApplication(sys.argv[:1])
    if demo and config is not None:
        raise PanelError(
            f"demo=True runs on the simulator, config={config} asks for another "
            "microscope: leave one of them out."
        )
    sessions = MicroscopeSessions(roi=roi)
    panel = DeepzPanel(sessions, config=config, model=model or LIVE_MODEL_NAME)
    try:
        if settings:
            _apply_settings(panel, settings)
        if frames is not None:
            panel.controls.frames_box.setValue(int(frames))
            panel.controls.continuous_box.setChecked(False)
        elif screenshot is not None:
            panel.controls.frames_box.setValue(20)
            panel.controls.continuous_box.setChecked(False)
    except Exception:
        panel.close()
        raise
    if config is not None and not Path(config).expanduser().is_file():
        panel.show_error(f"Config: no configuration file at {config}.")
    app.aboutToQuit.connect(sessions.close)
    with _quiet_qt_noise():
        panel.show()
        try:
            if screenshot is None:
                return int(app.exec())
            _screenshot_run(app, panel, Path(screenshot), timeout_s)
            return 0
        finally:
            panel.close()
            panel.deleteLater()
            sessions.close()


# Qt warnings that say nothing to a user (the offscreen platform's window hints)
_QT_NOISE = ("propagateSizeHints",)


@contextmanager
def _quiet_qt_noise() -> Iterator[None]:
    """Drop known meaningless Qt warnings; pass everything else on."""
    from qtpy.QtCore import qInstallMessageHandler

    previous: Any = None

    def handler(mode: Any, context: Any, message: str) -> None:
        if any(noise in message for noise in _QT_NOISE):
            return
        if previous is not None:
            previous(mode, context, message)
        else:
            sys.stderr.write(f"{message}\n")

    previous = qInstallMessageHandler(handler)
    try:
        yield
    finally:
        qInstallMessageHandler(previous)


class PanelError(DeepzError):
    """The panel could not run, or a screenshot run failed; the message says why."""


def _apply_settings(panel: Any, values: Mapping[str, Any]) -> None:
    """Fill the panel's controls with ``values`` (validated as `LiveSettings`)."""
    from pydantic import ValidationError

    from deepz_live.gui._controls import _readable
    from deepz_live.gui._settings import LiveSettings, planes_from_range

    controls = panel.controls
    current = {
        "config": controls.config_field.edit.text(),
        "exposure_ms": controls.exposure_box.value(),
        "led_intensity": controls.led_box.value(),
        "interval_ms": controls.interval_box.value(),
        "frames": controls.frames_box.value(),
        "planes_um": controls.planes_um(),
        "model": controls.model_field.edit.text(),
        "backend": controls.backend_box.currentText(),
        "policy": controls.policy_box.currentText(),
        "out": controls.output_field.edit.text(),
        "save_volumes": controls.save_volumes_box.isChecked(),
    }
    try:
        settings = LiveSettings.model_validate({**current, **values})
    except ValidationError as error:
        raise PanelError(_readable(error)) from None
    planes = settings.planes_um
    if len(planes) > 1:
        even = planes_from_range(planes[0], planes[-1], settings.dz_um)
        if (
            len(even) != len(planes)
            or max(abs(a - b) for a, b in zip(even, planes, strict=True)) > 1e-6
        ):
            raise PanelError(
                "The panel takes evenly spaced planes (START:STOP:STEP), got "
                f"{', '.join(f'{p:g}' for p in planes)} µm."
            )
    controls.set_settings(settings)


def _screenshot_run(app: Any, panel: Any, path: Path, timeout_s: float) -> None:
    """Press Start, wait for the run to end, save the window; raise if it failed."""
    import time

    from deepz_live.gui._screenshot import save_screenshot

    controller = panel.controller
    ended: list[str] = []
    controller.run_finished.connect(lambda summary: ended.append("finished"))
    controller.run_failed.connect(lambda message: ended.append(message))
    panel.controls.start_button.click()  # through the panel's own controls
    deadline = time.monotonic() + timeout_s
    while not ended and panel.error_text == "" and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    if not ended and panel.error_text == "":
        controller.stop()
        panel.show_error(f"The screenshot run did not end within {timeout_s:g} s.")
    settle = time.monotonic() + 0.3  # the last redraws
    while time.monotonic() < settle:
        app.processEvents()
        time.sleep(0.01)
    view = panel.volume_view
    if not view.gl_available:
        print(
            f"warning: {view.gl_error} The screenshot shows the panel without its "
            "views.",
            file=sys.stderr,
        )
    save_screenshot(panel, path)
    if panel.error_text:
        raise PanelError(
            f"{panel.error_text} (the panel with this message is saved in {path})"
        )
