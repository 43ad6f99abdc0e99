"""Running the panel: the live-session factory and the entry point the CLI calls.

`MicroscopeSessions` is the panel's `SessionFactory` for the real pipeline: it opens
the microscope of the settings' configuration file (and keeps it open between runs,
so that Start is quick), and builds a `deepz.live_refocus` session for each run.
`run_panel` opens the window (``deepz gui``, ``deepz demo``) or runs it unattended
for a screenshot.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from acquisition import Microscope
    from gui._settings import LiveSettings

__all__ = ["CONTINUOUS_MAX_FRAMES", "MicroscopeSessions", "run_panel"]

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
        import deepz

        scope = self._scope_for(Path(settings.config))
        if snap:
            folder = Path(tempfile.mkdtemp(prefix="deepz-snap-"))
            out, frames = folder / "snap.ome.tif", 1
        else:
            folder, out = None, Path(settings.output)
            frames = settings.frames or self._continuous_frames(scope, settings)
        session = deepz.live_refocus(
            scope,
            frames=frames,
            out=out,
            model=settings.model,
            planes_um=settings.planes_um,
            policy=settings.policy,
            save_volumes=settings.save_volumes and not snap,
            interval_ms=settings.interval_ms,
            exposure_ms=settings.exposure_ms,
            led_intensity=settings.led_intensity_pct,
            backend=settings.backend,
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
        import deepz

        # DeepzCore keeps psygnal signals inside a QApplication (acquisition._core)
        with self._lock:
            scope = self._scope
            if scope is not None and not scope.closed:
                if scope.config_path.resolve() == config.resolve():
                    return scope
                scope.close()  # another configuration: open that one instead
                self._scope = None
            scope = deepz.open_microscope(config)
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
        folder = Path(settings.output).expanduser().absolute().parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        free = shutil.disk_usage(folder).free
        return max(1, min(CONTINUOUS_MAX_FRAMES, int(_DISK_SHARE * free / per_frame)))


def _centred_roi(scope: Microscope, size: int) -> None:
    core = scope.core
    width, height = core.getImageWidth(), core.getImageHeight()
    size = min(size, width, height)
    core.setROI((width - size) // 2, (height - size) // 2, size, size)


def run_panel(
    config: str | Path | None = None,
    model: str | None = None,
    demo: bool = False,
    screenshot: str | Path | None = None,
    frames: int | None = None,
    *,
    roi: int = 0,
    timeout_s: float = 600.0,
) -> int:
    """Open the deepz panel; return the process exit status.

    Parameters
    ----------
    config : path, optional
        Micro-Manager configuration (default: the simulator).
    model : str, optional
        Bundled model name or model file (default: ``default``).
    demo : bool
        The simulator with the bundled default model, ready to press Start.
    screenshot : path, optional
        Run ``frames`` frames unattended, save a PNG of the window here and exit
        (OpenGL views need a display: under Xvfb, ``xvfb-run -a``).
    frames : int, optional
        Frames per run (default 100; 20 for a screenshot).
    roi : int
        Centred square camera region in pixels (0: full sensor).
    timeout_s : float
        A screenshot run that has not finished by then is stopped.

    Returns
    -------
    int
        0, or 1 when a screenshot run failed (the message is printed).

    Raises
    ------
    gui.QtMissingError
        No Qt binding (or another GUI package) is installed: the message is the
        install hint.
    """
    from qtpy.QtWidgets import QApplication

    from gui._main_window import DeepzPanel

    app = QApplication.instance() or QApplication(sys.argv[:1])
    if demo:
        config, model = None, "default"
    sessions = MicroscopeSessions(roi=roi)
    panel = DeepzPanel(sessions, config=config, model=model or "default")
    if frames is not None:
        panel.controls.frames_box.setValue(int(frames))
        panel.controls.continuous_box.setChecked(False)
    elif screenshot is not None:
        panel.controls.frames_box.setValue(20)
    if config is not None and not Path(config).expanduser().is_file():
        panel.show_error(f"Config: no configuration file at {config}.")
    app.aboutToQuit.connect(sessions.close)
    panel.show()
    if screenshot is None:
        status = app.exec()
        sessions.close()
        return int(status)
    try:
        return _screenshot_run(app, panel, Path(screenshot), timeout_s)
    finally:
        panel.close()
        sessions.close()


def _screenshot_run(app: Any, panel: Any, path: Path, timeout_s: float) -> int:
    """Press Start, wait for the run to end, save the window, report."""
    import time

    from gui._screenshot import save_screenshot

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
        print(f"warning: {view.gl_error}", file=sys.stderr)
    save_screenshot(panel, path)
    print(f"screenshot: {path}", file=sys.stderr)
    if panel.error_text:
        print(f"error: {panel.error_text}", file=sys.stderr)
        return 1
    return 0
