"""``deepz gui`` and ``deepz demo`` open the panel; ``--screenshot`` runs it unattended.

The event loop of the interactive commands is replaced by a function that looks at
the window the command opened and closes it, so nothing waits for a user.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tifffile
from qtpy.QtGui import QImage
from qtpy.QtWidgets import QApplication

from deepz._cli import main
from deepz_live.acquisition import SIMULATOR_CONFIG
from deepz_live.gui import DeepzPanel, PanelError, display_problem, run_panel
from deepz_live.inference import LIVE_MODEL_NAME


def _run(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture
def opened_panels(qapp, monkeypatch):
    """Replace the event loop: record each panel shown (its settings), then close it."""
    seen: list[dict] = []

    def exec_once(*args) -> int:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, DeepzPanel) and widget.isVisible():
                controls = widget.controls
                seen.append(
                    {
                        "settings": controls.settings(),
                        "continuous": controls.continuous_box.isChecked(),
                        "start_enabled": controls.start_button.isEnabled(),
                        "state": widget.controller.state,
                        "error": widget.error_text,
                    }
                )
                widget.close()
        return 0

    monkeypatch.setattr(QApplication, "exec", exec_once)
    return seen


def test_demo_opens_the_panel_ready_to_start(opened_panels, tmp_path):
    out = tmp_path / "demo.ome.tif"
    args = ["demo", "--frames", "7", "--planes", "-4:4:2", "--interval-ms", "50"]
    assert _run([*args, "--out", str(out), "--backend", "torch"]) == 0
    (shown,) = opened_panels
    settings = shown["settings"]
    assert Path(settings.config) == Path(SIMULATOR_CONFIG)
    assert settings.model == LIVE_MODEL_NAME
    assert settings.frames == 7 and not shown["continuous"]
    assert settings.planes_um == (-4.0, -2.0, 0.0, 2.0, 4.0)
    assert settings.interval_ms == 50.0
    assert settings.backend == "torch"
    assert settings.out == out
    assert shown["start_enabled"] and shown["state"] == "idle"
    assert shown["error"] == ""
    assert not out.exists()  # nothing ran before Start


def test_gui_opens_the_given_config_and_model(opened_panels):
    assert _run(["gui", "--config", str(SIMULATOR_CONFIG), "--model", "default"]) == 0
    (shown,) = opened_panels
    assert Path(shown["settings"].config) == Path(SIMULATOR_CONFIG)
    assert shown["settings"].model == "default"


def test_demo_opens_the_given_model(opened_panels):
    assert _run(["demo", "--model", "default"]) == 0
    (shown,) = opened_panels
    assert shown["settings"].model == "default"
    assert Path(shown["settings"].config) == Path(SIMULATOR_CONFIG)


def test_a_demo_panel_on_another_config_is_refused(qapp):
    with pytest.raises(PanelError, match="leave one of them out"):
        run_panel(config=SIMULATOR_CONFIG, demo=True)


def test_demo_refuses_planes_the_panel_cannot_show(qapp, capsys):
    assert _run(["demo", "--planes", "-4,0,1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("deepz: error: The panel takes evenly spaced planes")
    assert err.count("\n") == 1


def test_no_display_is_one_line_not_a_qt_abort(monkeypatch):
    monkeypatch.setattr("sys.platform", "linux")
    for name in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    assert "xvfb-run" in display_problem()
    monkeypatch.setenv("DISPLAY", ":99")
    assert display_problem() is None
    monkeypatch.delenv("DISPLAY")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert display_problem() is None


@pytest.mark.slow
def test_demo_screenshot_runs_the_frames_and_saves_the_window(qapp, tmp_path, capsys):
    """The real pipeline (bundled model, 64-px region, 3 planes) in the panel.

    On Qt's offscreen platform there is no OpenGL: the PNG shows the panel with a
    note in place of the views, and a warning says so; under Xvfb it has the views.
    """
    png, out = tmp_path / "shots" / "panel.png", tmp_path / "demo.ome.tif"
    args = ["demo", "--screenshot", str(png), "--frames", "3", "--roi", "64"]
    args += ["--planes", "-4:4:4", "--interval-ms", "0", "--backend", "torch"]
    code = _run([*args, "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out == f"Saved a screenshot of the panel to {png}.\n"
    image = QImage(str(png))
    assert not image.isNull()
    assert image.width() >= 1000 and image.height() >= 600
    assert tifffile.imread(out).shape == (3, 64, 64)  # the run took its frames
    no_gl = QApplication.platformName() == "offscreen"
    assert ("OpenGL" in captured.err) == no_gl
