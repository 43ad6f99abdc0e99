"""The main window driven through its own controls, with a stand-in live session."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from qtpy.QtCore import Qt

from deepz_live.gui import DeepzPanel


@pytest.fixture
def panel_for(qtbot, tmp_path):
    def make(factory):
        panel = DeepzPanel(factory, use_gl=False)
        panel.controls._model_range = lambda model: 10.0
        panel.controls.output_field.edit.setText(str(tmp_path / "run.ome.tif"))
        qtbot.addWidget(panel)
        return panel

    return make


def click(qtbot, button):
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_start_and_stop_a_run_through_the_controls(qtbot, panel_for, fake_sessions):
    fake_sessions.options = {"period_s": 0.01}
    panel = panel_for(fake_sessions)
    panel.controls.continuous_box.setChecked(True)
    view, telemetry = panel.volume_view, panel.telemetry
    click(qtbot, panel.controls.start_button)
    qtbot.waitUntil(lambda: panel.controller.state == "running", timeout=5000)
    assert not panel.controls.start_button.isEnabled()
    assert panel.controls.stop_button.isEnabled()

    qtbot.waitUntil(lambda: (view.volume_index or 0) >= 3, timeout=5000)
    first_index, first = view.volume_index, view.slices()["xy"].copy()
    first_frames = telemetry.telemetry.frames
    qtbot.waitUntil(lambda: view.volume_index >= first_index + 5, timeout=5000)
    assert not np.array_equal(view.slices()["xy"], first)  # the display changed
    assert view.frame_index is not None
    qtbot.waitUntil(lambda: telemetry.telemetry.frames > first_frames, timeout=5000)
    assert telemetry.text("frames_per_s").endswith("/s")
    assert telemetry.text("dose_per_frame_J_cm2") == "2.00 mJ/cm²"
    # compared with scanning the same 9-plane volumes: 9× the light
    shown = telemetry.telemetry
    assert shown.zstack_planes == len(panel.controls.planes_um()) == 9
    assert shown.equivalent_zstack_dose_J_cm2 == pytest.approx(
        9 * shown.cumulative_dose_J_cm2
    )
    assert telemetry.text("zstack_dose_per_volume_J_cm2") == "18.0 mJ/cm²"
    assert view.voxel_size_um[1] == 0.5  # the session's pixel size

    click(qtbot, panel.controls.stop_button)
    qtbot.waitUntil(lambda: panel.controller.state == "idle", timeout=5000)
    session = fake_sessions.made[-1]
    assert session.stopped and session.closed
    assert panel.controls.start_button.isEnabled()
    assert panel.error_text == ""
    # the last volume acquired is the one shown
    final = session._count - 1
    assert view.volume_index == final


def test_a_finite_run_ends_by_itself(qtbot, panel_for, fake_sessions):
    panel = panel_for(fake_sessions)
    panel.controls.frames_box.setValue(12)
    states: list[str] = []
    panel.controller.state_changed.connect(states.append)
    with qtbot.waitSignal(panel.controller.run_finished, timeout=5000):
        click(qtbot, panel.controls.start_button)
    assert panel.volume_view.volume_index == 11
    assert panel.telemetry.telemetry.frames == 12
    assert panel.controller.state == "idle"
    assert states == ["starting", "running", "idle"]
    assert {type(state) for state in states} == {str}  # plain strings reach Qt slots


def test_snap_takes_one_frame(qtbot, panel_for, fake_sessions):
    panel = panel_for(fake_sessions)
    with qtbot.waitSignal(panel.controller.run_finished, timeout=5000):
        click(qtbot, panel.controls.snap_button)
    assert panel.volume_view.volume_index == 0
    assert panel.volume_view.volume.shape == (9, 32, 40)


def test_a_bad_config_path_shows_an_error_and_nothing_crashes(
    qtbot, panel_for, fake_sessions
):
    panel = panel_for(fake_sessions)
    panel.controls.config_field.edit.setText("/no/such/scope.cfg")
    click(qtbot, panel.controls.start_button)
    assert "no configuration file at /no/such/scope.cfg" in panel.error_text
    assert fake_sessions.made == []
    assert panel.controller.state == "idle"
    # fixing it and starting again clears the message
    panel.controls.config_field.edit.setText(str(fake_sessions_config()))
    panel.controls.frames_box.setValue(2)
    with qtbot.waitSignal(panel.controller.run_finished, timeout=5000):
        click(qtbot, panel.controls.start_button)
    assert panel.error_text == ""


def fake_sessions_config():
    from deepz_live.acquisition import SIMULATOR_CONFIG

    return SIMULATOR_CONFIG


def test_a_config_the_microscope_cannot_load_shows_its_error(
    qtbot, panel_for, tmp_path
):
    from deepz_live.acquisition import open_microscope

    def factory(settings, *, snap):
        open_microscope(settings.config)  # raises ConfigError
        raise AssertionError("unreachable")

    bad = tmp_path / "broken.cfg"
    bad.write_text("Device,Camera,NoSuchLibrary,NoSuchCamera\n")
    panel = panel_for(factory)
    panel.controls.config_field.edit.setText(str(bad))
    with qtbot.waitSignal(panel.controller.run_failed, timeout=20000):
        click(qtbot, panel.controls.start_button)
    assert "broken.cfg" in panel.error_text
    assert "Traceback" not in panel.error_text
    assert panel.controller.state == "idle"
    assert panel.controls.start_button.isEnabled()


def test_a_missing_model_shows_an_error(qtbot, tmp_path):
    panel = DeepzPanel(lambda settings, *, snap: None, use_gl=False)
    qtbot.addWidget(panel)
    panel.controls.output_field.edit.setText(str(tmp_path / "run.ome.tif"))
    panel.controls.model_field.edit.setText("no-such-model")
    click(qtbot, panel.controls.start_button)
    assert "Model: no bundled model named 'no-such-model'" in panel.error_text
    assert panel.controller.state == "idle"


def test_a_device_error_during_a_run_shows_and_the_run_ends(
    qtbot, panel_for, fake_sessions
):
    fake_sessions.options = {"fail_at": 5}
    panel = panel_for(fake_sessions)
    with qtbot.waitSignal(panel.controller.run_failed, timeout=5000):
        click(qtbot, panel.controls.start_button)
    assert panel.error_text == "Device error: camera lost connection"
    assert fake_sessions.made[-1].closed
    assert panel.controller.state == "idle"
    assert panel.volume_view.volume_index == 4  # frames before the error were shown
    panel.clear_error()
    assert panel.error_text == ""


def test_callbacks_never_run_widget_code_in_the_session_thread(
    qtbot, panel_for, fake_sessions
):
    main = threading.current_thread()
    seen = []
    panel = panel_for(fake_sessions)
    original = panel.volume_view.set_volume

    def spy(*args, **kwargs):
        seen.append(threading.current_thread())
        return original(*args, **kwargs)

    panel.volume_view.set_volume = spy
    panel.controls.frames_box.setValue(20)
    with qtbot.waitSignal(panel.controller.run_finished, timeout=5000):
        click(qtbot, panel.controls.start_button)
    assert seen and all(thread is main for thread in seen)
    assert fake_sessions.made[-1].thread_names == {"fake-acq"}


def test_without_a_session_factory_start_explains(qtbot, tmp_path):
    panel = DeepzPanel(None, use_gl=False)
    qtbot.addWidget(panel)
    panel.controls._model_range = lambda model: 10.0
    panel.controls.output_field.edit.setText(str(tmp_path / "run.ome.tif"))
    click(qtbot, panel.controls.start_button)
    assert "not available" in panel.error_text
