"""open_microscope: configs, clear config errors, lifetime, focus, properties."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import useq
from pymmcore_plus.mda import MDAEngine

from deepz_live.acquisition import (
    SIMULATOR_CONFIG,
    AcquisitionError,
    ConfigError,
    DeepzEngine,
    DeepzError,
    Microscope,
    open_microscope,
)

REPO = Path(__file__).parents[2]
FAKES_MODULE = "deepz_test_fakes"  # tests/conftest.py registers itself under it


# -- loading -------------------------------------------------------------------------
def test_default_is_the_simulator(simulator: Microscope) -> None:
    core = simulator.core
    assert simulator.config_path == SIMULATOR_CONFIG.resolve()
    assert core.getCameraDevice() == "Camera"
    assert core.getFocusDevice() == "Z"
    assert isinstance(core.mda.engine, DeepzEngine)
    image = simulator.snap()
    assert image.shape == (128, 128)  # 512² sensor, binned 4×4 by the fixture
    assert image.dtype.name == "uint16"
    assert image.max() > image.min()  # a specimen, not a blank frame


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "scope.cfg"
    with pytest.raises(ConfigError, match="does not exist") as info:
        open_microscope(missing)
    assert str(missing) in str(info.value)


def test_directory_is_not_a_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        open_microscope(tmp_path)


def test_malformed_line_gives_line_number_and_text(write_cfg) -> None:
    cfg = write_cfg(
        "# a comment\n"
        "Property,Core,Initialize,1\n"
        "\n"
        "Device,Cam\n"  # line 4: too few fields
    )
    with pytest.raises(ConfigError) as info:
        open_microscope(cfg)
    message = str(info.value)
    assert "line 4" in message
    assert "'Device,Cam'" in message
    assert "requires 3 arguments" in message
    assert str(cfg) in message


def test_unknown_command_is_reported_with_its_line(write_cfg) -> None:
    cfg = write_cfg("Property,Core,Initialize,1\nFrobnicate,Camera,1\n")
    with pytest.raises(ConfigError, match=r"line 2 \('Frobnicate,Camera,1'\)"):
        open_microscope(cfg)


def test_missing_cpp_adapter_says_mmcore_install(write_cfg) -> None:
    cfg = write_cfg("# demo camera\nDevice,Cam,DemoCamera,DCam\n")
    with pytest.raises(ConfigError) as info:
        open_microscope(cfg)
    message = str(info.value)
    assert "mmcore install" in message
    assert "'DemoCamera'" in message
    assert "line 2" in message
    assert "not installed" in message


def test_missing_python_device_module_is_not_an_adapter_problem(write_cfg) -> None:
    cfg = write_cfg("#py pyDevice,Cam,no_such_package.cameras,Cam\n")
    with pytest.raises(ConfigError, match="cannot be imported") as info:
        open_microscope(cfg)
    assert "mmcore install" not in str(info.value)


def test_config_without_camera(write_cfg) -> None:
    cfg = write_cfg(
        f"#py pyDevice,Z,{FAKES_MODULE},FakeFocus\n"
        "Property,Core,Initialize,1\n#py Property,Core,Focus,Z\n"
    )
    with pytest.raises(ConfigError, match="no camera") as info:
        open_microscope(cfg)
    assert "Property,Core,Camera" in str(info.value)


def test_config_without_focus_device(write_cfg) -> None:
    cfg = write_cfg(
        f"#py pyDevice,Camera,{FAKES_MODULE},FakeCamera\n"
        "Property,Core,Initialize,1\n#py Property,Core,Camera,Camera\n"
    )
    with pytest.raises(ConfigError, match=r"no focus \(Z\) device") as info:
        open_microscope(cfg)
    assert "Camera" in str(info.value)  # lists what it did load


def test_errors_share_a_base_class() -> None:
    assert issubclass(ConfigError, DeepzError)
    assert issubclass(AcquisitionError, DeepzError)


# -- lifetime ------------------------------------------------------------------------
def test_close_is_idempotent_and_releases_devices(fake_scope_cfg: Path) -> None:
    with open_microscope(fake_scope_cfg) as scope:
        core = scope.core
        assert "Camera" in core.getLoadedDevices()
    assert scope.closed
    assert list(core.getLoadedDevices()) == ["Core"]
    scope.close()  # second close: nothing happens
    with pytest.raises(DeepzError, match="closed"):
        _ = scope.core


@pytest.mark.slow
def test_process_exits_cleanly_without_close(fake_scope_cfg: Path) -> None:
    """A core that ran an MDA and is never closed used to abort the interpreter.

    Without the at-exit teardown about half of these runs end with "FATAL: exception
    not rethrown" (exit 134) on this machine.
    """
    script = textwrap.dedent(
        f"""
        import useq
        import conftest  # registers the fake devices' module
        from deepz_live.acquisition import open_microscope
        scope = open_microscope({str(fake_scope_cfg)!r})
        run = scope.core.mda.run
        run(useq.MDASequence(time_plan={{"interval": 0, "loops": 5}}))
        run(useq.MDASequence(time_plan={{"interval": 0.001, "loops": 2}}))
        print("acquired")
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
        "PYMM_LOG_FILE": "0",
    }
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(10)
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in runs]
    for code, out, err in results:
        assert "acquired" in out, err
        assert code == 0, err[-500:]


# -- focus ---------------------------------------------------------------------------
def test_focus_on_specimen_moves_to_focus_z(simulator: Microscope) -> None:
    core = simulator.core
    expected = float(core.getProperty("Specimen", "FocusZ"))
    core.setPosition("Z", expected + 30)
    z = simulator.focus_on_specimen()
    assert z == pytest.approx(expected)
    assert core.getPosition("Z") == pytest.approx(expected)


def test_focus_on_specimen_without_specimen_is_a_no_op(fake_scope_cfg: Path) -> None:
    with open_microscope(fake_scope_cfg) as scope:
        scope.core.setPosition("Z", 12.5)
        assert scope.focus_on_specimen() is None
        assert scope.core.getPosition("Z") == pytest.approx(12.5)


def test_move_focus_checks_stage_limits(simulator: Microscope) -> None:
    assert simulator.focus_limits() == (-50.0, 250.0)
    assert simulator.move_focus(42.0) == pytest.approx(42.0)
    with pytest.raises(AcquisitionError, match="outside the travel"):
        simulator.move_focus(1000.0)
    assert simulator.core.getPosition("Z") == pytest.approx(42.0)


# -- properties ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("device", "prop", "value", "message"),
    [
        ("Laser", "Power", "1", "No device 'Laser'"),
        ("Camera", "Speed", "1", "has no property 'Speed'"),
        ("Camera", "SensorPixelSize_um", "1", "read-only"),
        ("Camera", "Clock", "fast", "choose one of real, simulated"),
        ("LED", "Intensity", "150", "outside its limits"),
        ("LED", "Intensity", "bright", "takes a number"),
    ],
)
def test_set_property_explains_refusals(
    simulator: Microscope, device: str, prop: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        simulator.set_property(device, prop, value)


def test_set_property_sets(simulator: Microscope) -> None:
    simulator.set_property("LED", "Intensity", "55")
    assert float(simulator.core.getProperty("LED", "Intensity")) == 55


# -- engine --------------------------------------------------------------------------
def test_snapped_frames_carry_the_simulator_metadata(simulator: Microscope) -> None:
    """Single snaps (a z-stack) get meta['camera_metadata'] like streamed frames."""
    core = simulator.core
    seen: list[dict] = []
    core.mda.events.frameReady.connect(lambda img, event, meta: seen.append(meta))
    core.setPosition("Z", 10.0)
    core.mda.run(
        useq.MDASequence(z_plan={"range": 2, "step": 1}, stage_positions=[{"z": 10}])
    )
    assert len(seen) == 3
    for meta, z in zip(seen, [9.0, 10.0, 11.0], strict=True):
        camera = meta["camera_metadata"]
        assert camera["z_um"] == pytest.approx(z)
        assert camera["dose_J_cm2"] > 0
        for key in ("time_s", "exposure_ms", "irradiance_W_cm2", "led_on_ms"):
            assert key in camera
    indices = [m["camera_metadata"]["frame_index"] for m in seen]
    assert indices == sorted(set(indices))  # one record per frame, not a shared one


def test_real_cameras_get_no_invented_metadata(fake_scope_cfg: Path) -> None:
    with open_microscope(fake_scope_cfg) as scope:
        seen: list[dict] = []
        scope.core.mda.events.frameReady.connect(lambda i, e, meta: seen.append(meta))
        scope.core.mda.run(useq.MDASequence(z_plan={"range": 2, "step": 1}))
    assert len(seen) == 3
    assert all("camera_metadata" not in meta for meta in seen)


def test_failed_snap_raises_instead_of_dropping_the_frame(
    fake_scope_cfg: Path, hold_camera
) -> None:
    with open_microscope(fake_scope_cfg) as scope:
        camera = hold_camera(scope)
        camera.fail_at = 1
        seen: list[int] = []
        scope.core.mda.events.frameReady.connect(lambda img, e, m: seen.append(1))
        with pytest.raises(AcquisitionError, match="camera lost connection"):
            scope.core.mda.run(useq.MDASequence(z_plan={"range": 2, "step": 1}))
    assert len(seen) == 1


def test_upstream_engine_skips_a_failed_snap(fake_scope_cfg: Path, hold_camera) -> None:
    """What DeepzEngine relies on: pymmcore-plus's engine yields no frame for a failed
    snap (it logs the error), and DeepzCore keeps the error.

    If this fails, pymmcore-plus changed how it reports failed snaps: revisit
    `DeepzEngine.exec_single_event` (the one place that relies on it).
    """
    with open_microscope(fake_scope_cfg) as scope:
        core = scope.core
        hold_camera(scope).fail_at = 1
        core.mda.set_engine(MDAEngine(core))
        seen: list[int] = []
        core.mda.events.frameReady.connect(lambda img, e, m: seen.append(1))
        core.mda.run(useq.MDASequence(z_plan={"range": 2, "step": 1}))
        assert len(seen) == 1  # three events, two failed snaps, no error
        assert isinstance(core.last_snap_error, RuntimeError)
        assert "camera lost connection" in str(core.last_snap_error)
        hold_camera(scope)  # a working camera: the next snap clears it
        core.snapImage()
        assert core.last_snap_error is None


def test_failing_focus_names_the_device_and_the_event(fake_scope_cfg: Path) -> None:
    fake_focus = sys.modules[FAKES_MODULE].FakeFocus

    class StuckFocus(fake_focus):
        def set_position_um(self, val: float) -> None:
            raise RuntimeError("Z drive not responding")

    with open_microscope(fake_scope_cfg) as scope:
        core = scope.core
        core.unloadDevice("Z")  # load one we made: the public way to choose it
        core.loadPyDevice("Z", StuckFocus())
        core.initializeDevice("Z")
        core.setFocusDevice("Z")
        with pytest.raises(
            AcquisitionError,
            match=r"Focus device 'Z' failed to move to z = -1 µm for event .*: "
            r"Z drive not responding",
        ):
            core.mda.run(useq.MDASequence(z_plan={"range": 2, "step": 1}))
        failure = core.last_move_failure
        assert failure is not None
        assert (failure.stage, failure.target_um) == ("Z", -1.0)


def test_real_hardware_never_imports_the_simulator(fake_scope_cfg: Path) -> None:
    """Pixel size and the engine look for the simulator without importing it."""
    script = textwrap.dedent(
        f"""
        import sys
        import useq
        import conftest  # registers the fake devices' module
        from deepz_live.acquisition import open_microscope
        with open_microscope({str(fake_scope_cfg)!r}) as scope:
            assert scope.core.getPixelSizeUm() == 0.0  # no preset: asks for a bench
            scope.core.mda.run(useq.MDASequence(z_plan={{"range": 2, "step": 1}}))
        prefix = "deepz_live.acquisition.simulator"
        print("simulator modules:", [m for m in sys.modules if m.startswith(prefix)])
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
        "PYMM_LOG_FILE": "0",
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "simulator modules: []" in result.stdout, result.stdout
