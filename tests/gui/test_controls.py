"""The run controls: the settings they produce, and the input they refuse."""

from __future__ import annotations

from pathlib import Path

import pytest
from qtpy.QtCore import Qt

from deepz_live.acquisition import SIMULATOR_CONFIG
from deepz_live.gui import ControlsWidget, LiveSettings, SettingsError, next_free_path
from deepz_live.inference import LIVE_MODEL_NAME


@pytest.fixture
def controls(qtbot, tmp_path):
    widget = ControlsWidget(model_range=lambda model: 10.0)
    widget.output_field.edit.setText(str(tmp_path / "run.ome.tif"))
    qtbot.addWidget(widget)
    return widget


def test_the_defaults_are_a_runnable_simulator_run(controls, tmp_path):
    settings = controls.settings()
    assert isinstance(settings, LiveSettings)
    assert settings.config == Path(SIMULATOR_CONFIG)
    assert settings.planes_um == (-8.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0)
    assert settings.model == LIVE_MODEL_NAME == "default-fast"
    assert settings.out == tmp_path / "run.ome.tif"
    assert settings.frames == 100
    assert not settings.save_volumes


def test_the_fields_become_the_settings(controls, qtbot, tmp_path):
    controls.exposure_box.setValue(25.0)
    controls.led_box.setValue(55.0)
    controls.interval_box.setValue(100.0)
    controls.continuous_box.setChecked(True)
    controls.plane_from_box.setValue(-3.0)
    controls.plane_to_box.setValue(3.0)
    controls.plane_step_box.setValue(1.5)
    controls.backend_box.setCurrentText("onnxruntime")
    controls.policy_box.setCurrentText("all")
    controls.save_volumes_box.setChecked(True)
    with qtbot.waitSignal(controls.start_requested) as signal:
        qtbot.mouseClick(controls.start_button, Qt.MouseButton.LeftButton)
    settings = signal.args[0]
    assert settings.exposure_ms == 25.0
    assert settings.led_intensity == 55.0
    assert settings.interval_ms == 100.0
    assert settings.frames is None  # continuous
    assert settings.planes_um == (-3.0, -1.5, 0.0, 1.5, 3.0)
    assert settings.backend == "onnxruntime"
    assert settings.policy == "all"
    assert settings.save_volumes
    assert "5 planes" in controls.plane_count_label.text()
    controls.set_settings(settings)  # and back
    assert controls.settings() == settings


def test_snap_and_stop(controls, qtbot):
    with qtbot.waitSignal(controls.snap_requested):
        qtbot.mouseClick(controls.snap_button, Qt.MouseButton.LeftButton)
    controls.set_running(True)
    assert not controls.start_button.isEnabled()
    assert not controls.exposure_box.isEnabled()  # no edits mid-run
    with qtbot.waitSignal(controls.stop_requested):
        qtbot.mouseClick(controls.stop_button, Qt.MouseButton.LeftButton)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.config_field.edit.setText(""), "Config: choose a Micro-Manager"),
        (
            lambda c: c.config_field.edit.setText("/no/such/scope.cfg"),
            "no configuration file at /no/such/scope.cfg",
        ),
        (
            lambda c: c.plane_from_box.setValue(-12.0),
            "-12 µm is outside the trained range of the model, ±10 µm",
        ),
        (
            lambda c: c.plane_to_box.setValue(12.5),
            "12 µm is outside the trained range",
        ),
        (lambda c: c.plane_step_box.setValue(0.0), "the step must be more than 0 µm"),
        (
            lambda c: c.plane_from_box.setValue(9.0),
            "the last plane (8 µm) is below the first (9 µm)",
        ),
        (lambda c: c.output_field.edit.setText(" "), "Saving: choose a file"),
        (lambda c: c.model_field.edit.setText(""), "Model: choose a model"),
    ],
)
def test_bad_input_is_refused_with_a_message(controls, qtbot, edit, message):
    edit(controls)
    with pytest.raises(SettingsError, match=r"\w"):
        controls.settings()
    with qtbot.waitSignal(controls.invalid) as signal:
        qtbot.mouseClick(controls.start_button, Qt.MouseButton.LeftButton)
    assert message in signal.args[0]


def test_the_model_range_comes_from_the_model_file(qtbot, tmp_path):
    controls = ControlsWidget()  # reads the bundled model's ±10 µm
    qtbot.addWidget(controls)
    controls.output_field.edit.setText(str(tmp_path / "run.ome.tif"))
    controls.plane_to_box.setValue(10.0)
    assert controls.settings().planes_um[-1] == 10.0
    controls.plane_to_box.setValue(12.0)
    with pytest.raises(SettingsError, match="±10 µm"):
        controls.settings()
    controls.model_field.edit.setText(str(tmp_path / "missing.safetensors"))
    with pytest.raises(SettingsError, match=r"Model: no model file at .*missing"):
        controls.settings()


def test_an_existing_output_gets_the_next_free_name(controls, tmp_path):
    (tmp_path / "run.ome.tif").write_bytes(b"")
    (tmp_path / "run-001.ome.tif").write_bytes(b"")
    assert controls.settings().out == tmp_path / "run-002.ome.tif"
    assert next_free_path(tmp_path / "run-001.ome.tif") == tmp_path / "run-002.ome.tif"
    (tmp_path / "x.zarr").mkdir()
    assert next_free_path(tmp_path / "x.zarr") == tmp_path / "x-001.zarr"


def test_settings_are_frozen_and_strict(tmp_path):
    settings = LiveSettings(config=SIMULATOR_CONFIG, out=tmp_path / "a.ome.tif")
    with pytest.raises(Exception, match="frozen"):
        settings.exposure_ms = 5.0
    with pytest.raises(Exception, match="Extra inputs"):
        LiveSettings(config=SIMULATOR_CONFIG, out="a.tif", gain=3)
    with pytest.raises(Exception, match="increase"):
        LiveSettings(config=SIMULATOR_CONFIG, out="a.tif", planes_um=(1.0, 0.0))
    round_trip = LiveSettings.model_validate_json(settings.model_dump_json())
    assert round_trip == settings


def test_the_panel_settings_are_a_run_plan() -> None:
    from deepz_live.acquisition import RunPlan

    settings = LiveSettings(config=SIMULATOR_CONFIG, out="a.ome.tif")
    assert isinstance(settings, RunPlan)
    # the panel's defaults on top of the plan's
    assert (settings.frames, settings.led_intensity) == (100, 20.0)
    with pytest.raises(ValueError, match="tensorrt"):
        LiveSettings(config=SIMULATOR_CONFIG, out="a.ome.tif", backend="tensorrt")
