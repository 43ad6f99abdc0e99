"""Shared fixtures: small config files and a camera that can be made to fail."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from pymmcore_plus.experimental.unicore import (
    ShutterDevice,
    SimpleCameraDevice,
    StageDevice,
    pymm_property,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


class FakeCamera(SimpleCameraDevice):
    """A 48×64 uint16 camera whose frame k is filled with the value k.

    Set ``fail_at`` to make snap number ``fail_at`` (0-based) raise, as a camera that
    drops off the bus mid-run would.
    """

    def __init__(self) -> None:
        super().__init__()
        self._exposure = 1.0
        self.frames_taken = 0
        self.fail_at: int | None = None

    def get_exposure(self) -> float:
        return self._exposure

    def set_exposure(self, exposure: float) -> None:
        self._exposure = exposure

    def sensor_shape(self) -> tuple[int, int]:
        return (48, 64)

    def dtype(self) -> Any:
        return np.uint16

    def snap(self, buffer: np.ndarray) -> Mapping:
        if self.fail_at is not None and self.frames_taken >= self.fail_at:
            raise RuntimeError("camera lost connection")
        buffer[:] = self.frames_taken
        self.frames_taken += 1
        return {}


class FakeFocus(StageDevice):
    """A focus drive with ±100 µm travel, reported as LowerLimit/UpperLimit."""

    def __init__(self) -> None:
        super().__init__()
        self._z = 0.0

    def set_position_um(self, val: float) -> None:
        self._z = val

    def get_position_um(self) -> float:
        return self._z

    def home(self) -> None:
        self._z = 0.0

    def stop(self) -> None:
        pass

    def set_origin(self) -> None:
        self._z = 0.0

    @pymm_property(is_read_only=True, name="LowerLimit")
    def lower_limit(self) -> float:
        return -100.0

    @pymm_property(is_read_only=True, name="UpperLimit")
    def upper_limit(self) -> float:
        return 100.0


class FakeShutter(ShutterDevice):
    """An LED that is either on or off."""

    def __init__(self) -> None:
        super().__init__()
        self._open = False

    def get_open(self) -> bool:
        return self._open

    def set_open(self, open: bool) -> None:
        self._open = open


# Config files name Python devices by module; give this module a name that does not
# depend on how pytest imported it.
FAKES_MODULE = "deepz_test_fakes"
sys.modules.setdefault(FAKES_MODULE, sys.modules[__name__])


def fake_scope_cfg_text(*, pixel_size_um: float | None = None) -> str:
    """Config of a tiny all-Python scope: 48×64 camera, ±100 µm Z, LED; no Specimen.

    With ``pixel_size_um``, a pixel-size calibration is added. (It is keyed on a core
    property: pymmcore-plus 0.18 cannot match pixel-size presets on Python devices.)
    """
    module = FAKES_MODULE
    text = (
        f"#py pyDevice,Camera,{module},FakeCamera\n"
        f"#py pyDevice,Z,{module},FakeFocus\n"
        f"#py pyDevice,LED,{module},FakeShutter\n"
        "Property,Core,Initialize,1\n"
        "#py Property,Core,Camera,Camera\n"
        "#py Property,Core,Focus,Z\n"
        "#py Property,Core,Shutter,LED\n"
    )
    if pixel_size_um is not None:
        text += (
            "Property,Core,AutoShutter,1\n"
            "ConfigPixelSize,Res,Core,AutoShutter,1\n"
            f"PixelSize_um,Res,{pixel_size_um}\n"
        )
    return text


@pytest.fixture
def write_cfg(tmp_path: Path):
    """Write a .cfg file with the given text into tmp_path and return its path."""

    def _write(text: str, name: str = "scope.cfg") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write


@pytest.fixture
def fake_scope_cfg(write_cfg) -> Path:
    """Config of a tiny all-Python scope (48×64 camera, ±100 µm Z, LED)."""
    return write_cfg(fake_scope_cfg_text(), "fake_scope.cfg")


@pytest.fixture
def simulator():
    """The simulated microscope, made fast: simulated clock, 4×4 binning (128²)."""
    from deepz_live.acquisition import open_microscope

    with open_microscope() as scope:
        scope.core.setProperty("Camera", "Clock", "simulated")
        scope.core.setProperty("Camera", "Binning", "4")
        yield scope


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random width-4 U-Net model file for the binned simulator (1.3 µm pixels,
    NA 0.75, 525 nm), ±10 µm: fast to load and run, not a trained model."""
    import torch

    from deepz_live.inference import (
        GeneratorConfig,
        ModelInfo,
        build_generator,
        save_model,
    )

    config = GeneratorConfig(base_width=4, depth=2, residual=False)
    torch.manual_seed(0)
    generator = build_generator(config)
    info = ModelInfo(
        format_version=1,
        name="tiny",
        generator=config.to_dict(),
        normalization={"offset": 100.0, "percentile": 99.5, "min_scale": 1.0},
        pixel_size_um=1.3,
        wavelength_um=0.525,
        na=0.75,
        dz_range_um=10.0,
        dpm_scale_um=10.0,
        training={},
        validation={},
        created="2026-11-21T00:00:00+00:00",
        software={},
    )
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    save_model(path, generator, info)
    return path
