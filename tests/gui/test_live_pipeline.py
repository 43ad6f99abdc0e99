"""The panel on the real pipeline: the simulator, the bundled model, deepz.live_refocus.

Small frames (a 64-pixel camera region) and three planes keep it to seconds on a CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from qtpy.QtCore import Qt

from deepz_live.gui import DeepzPanel
from deepz_live.gui._app import MicroscopeSessions

pytestmark = pytest.mark.slow


@pytest.fixture
def live_panel(qtbot, tmp_path):
    sessions = MicroscopeSessions(roi=64, device="cpu")
    panel = DeepzPanel(sessions, use_gl=False)
    qtbot.addWidget(panel)
    controls = panel.controls
    controls.output_field.edit.setText(str(tmp_path / "live.ome.tif"))
    controls.plane_from_box.setValue(-4.0)
    controls.plane_to_box.setValue(4.0)
    controls.plane_step_box.setValue(4.0)
    controls.backend_box.setCurrentText("torch")
    controls.interval_box.setValue(50.0)
    yield panel
    panel.close()
    sessions.close()


def test_start_and_stop_on_the_simulator(qtbot, live_panel, tmp_path):
    panel, view = live_panel, live_panel.volume_view
    panel.controls.continuous_box.setChecked(True)
    qtbot.mouseClick(panel.controls.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.volume_index is not None, timeout=120_000)
    assert panel.error_text == ""
    first_index, first = view.volume_index, view.slices()["xy"].copy()
    assert view.volume.shape == (3, 64, 64)
    assert tuple(view.planes_um) == (-4.0, 0.0, 4.0)
    assert view.voxel_size_um[1] == pytest.approx(0.325)
    qtbot.waitUntil(lambda: view.volume_index > first_index, timeout=60_000)
    assert not np.array_equal(view.slices()["xy"], first)  # a new frame, new volume
    shown_frames = panel.telemetry.telemetry.frames or 0
    qtbot.waitUntil(
        lambda: (panel.telemetry.telemetry.frames or 0) > shown_frames + 2,
        timeout=30_000,
    )  # the telemetry follows the run
    assert panel.telemetry.text("frames_per_s").endswith("/s")
    assert panel.telemetry.text("dose_per_frame_J_cm2").endswith("J/cm²")
    assert panel.telemetry.text("zstack_label") == "as 3-plane z-stacks"

    with qtbot.waitSignal(panel.controller.run_finished, timeout=60_000):
        qtbot.mouseClick(panel.controls.stop_button, Qt.MouseButton.LeftButton)
    assert panel.error_text == ""
    frames = tifffile.imread(tmp_path / "live.ome.tif")  # closed and readable
    assert frames.shape[1:] == (64, 64)
    assert frames.shape[0] >= view.volume_index + 1


def test_a_device_error_ends_the_run_with_a_message(qtbot, live_panel, tmp_path):
    panel = live_panel
    panel.controls.frames_box.setValue(200)
    qtbot.mouseClick(panel.controls.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: (panel.telemetry.telemetry.frames or 0) >= 2, timeout=120_000
    )
    scope = panel.controller.session.scope
    camera = scope.core.getCameraDevice()  # a camera that disappears mid-run
    with qtbot.waitSignal(panel.controller.run_failed, timeout=60_000):
        scope.core.unloadDevice(camera)
    message = panel.error_text
    assert message.startswith("Acquisition failed after")
    assert "live.ome.tif" in message  # says where the frames taken so far are
    assert "Traceback" not in message
    assert panel.controller.state == "idle"
    frames = tifffile.imread(tmp_path / "live.ome.tif")  # what was taken is saved
    assert frames.shape[0] >= 2
