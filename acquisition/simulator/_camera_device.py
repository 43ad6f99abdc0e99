"""The simulated camera (``Camera``): renders the specimen at the current focus.

Each snap takes the focus from the stage and the light from the LED, renders the
specimen's fluorophores through the optics (`Renderer`), books the dose and its
bleaching, and exposes the photons through the sensor's noise model
(`CameraNoiseModel`).

Time
----
``Camera`` property ``Clock``: ``real`` (default; a frame takes at least its exposure
time, timestamps are wall-clock seconds since the camera started) or ``simulated``
(no waiting: time advances by the exposure at each frame; for fast tests).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pymmcore_plus.experimental.unicore import SimpleCameraDevice, pymm_property

from ._bench import BenchMember
from ._camera_model import CameraNoiseModel
from ._render import Renderer, photon_scale

__all__ = ["SENSOR_PIXELS", "SENSOR_PIXEL_UM", "Camera"]

#: The sCMOS sensor: 512 × 512 pixels of 6.5 µm (unbinned).
SENSOR_PIXELS = 512
SENSOR_PIXEL_UM = 6.5


class Camera(BenchMember, SimpleCameraDevice):
    """Widefield fluorescence camera: renders the specimen at the current focus.

    512×512 sCMOS with 6.5 µm pixels (EMVA 1288 noise model), ROI and binning.
    """

    _ROLE = "camera"

    def __init__(self) -> None:
        super().__init__()
        self._exposure = 10.0
        self._binning = 1
        self._clock_mode = "real"
        self._virtual_s = 0.0
        self._t0 = time.perf_counter()
        self._frame_index = 0
        self.noise = CameraNoiseModel()
        self._renderer: Renderer | None = None
        self.last_frame_metadata: dict[str, Any] = {}

    # -- required camera API ---------------------------------------------------------
    def get_exposure(self) -> float:
        return self._exposure

    def set_exposure(self, exposure: float) -> None:
        exposure = float(exposure)
        if not 0 < exposure <= 600_000:
            raise ValueError(
                f"Exposure {exposure:g} ms is out of range; "
                "use 0 < exposure ≤ 600000 ms."
            )
        self._exposure = exposure

    def sensor_shape(self) -> tuple[int, int]:
        n = SENSOR_PIXELS // self._binning
        return (n, n)

    def dtype(self) -> Any:
        return np.uint16

    def get_binning(self) -> int:
        return self._binning

    def set_binning(self, value: int) -> None:
        value = int(value)
        if value not in (1, 2, 4):
            raise ValueError(f"Binning {value} is not supported; use 1, 2 or 4.")
        self._binning = value
        self.clear_roi()

    # -- clock -----------------------------------------------------------------------
    @pymm_property(allowed_values=("real", "simulated"), name="Clock")
    def clock(self) -> str:
        """``real`` waits out each exposure; ``simulated`` advances virtual time."""
        return self._clock_mode

    @clock.setter
    def clock(self, value: str) -> None:
        self._clock_mode = value
        self._virtual_s = 0.0
        self._t0 = time.perf_counter()

    def now(self) -> float:
        """Seconds since the camera's clock started."""
        if self._clock_mode == "simulated":
            return self._virtual_s
        return time.perf_counter() - self._t0

    @pymm_property(is_read_only=True, name="SensorPixelSize_um")
    def sensor_pixel_um(self) -> float:
        return SENSOR_PIXEL_UM

    @pymm_property(limits=(0.0, 1.0), name="QuantumEfficiency")
    def quantum_efficiency(self) -> float:
        return self.noise.quantum_efficiency

    @quantum_efficiency.setter
    def quantum_efficiency(self, value: float) -> None:
        self._set_noise(quantum_efficiency=float(value))

    @pymm_property(limits=(0.0, 100.0), name="ReadNoise_e")
    def read_noise_e(self) -> float:
        return self.noise.read_noise_e

    @read_noise_e.setter
    def read_noise_e(self, value: float) -> None:
        self._set_noise(read_noise_e=float(value))

    @pymm_property(limits=(0.0, 1000.0), name="DarkCurrent_e_per_s")
    def dark_current_e_per_s(self) -> float:
        return self.noise.dark_current_e_per_s

    @dark_current_e_per_s.setter
    def dark_current_e_per_s(self, value: float) -> None:
        self._set_noise(dark_current_e_per_s=float(value))

    def get_gain(self) -> float:
        """System gain K (ADU per electron)."""
        return self.noise.gain_adu_per_e

    def set_gain(self, value: float) -> None:
        if float(value) <= 0:
            raise ValueError("Gain must be positive (ADU per electron).")
        self._set_noise(gain_adu_per_e=float(value))

    def get_offset(self) -> float:
        return self.noise.offset_adu

    def set_offset(self, value: float) -> None:
        self._set_noise(offset_adu=float(value))

    def _set_noise(self, **changes: Any) -> None:
        from dataclasses import replace

        self.noise = replace(self.noise, **changes)

    # -- rendering -------------------------------------------------------------------
    def invalidate(self) -> None:
        """Forget cached renders (optics or specimen changed)."""
        self._renderer = None

    def _get_renderer(self) -> Renderer:
        bench = self.bench()
        optics = bench._require("optics").optics
        specimen = bench._require("specimen").specimen
        r = self._renderer
        if r is None or r.optics != optics or r.specimen is not specimen:
            r = self._renderer = Renderer(optics, specimen)
        return r

    def pixel_um(self) -> float:
        return self.bench()._require("optics").optics.sample_pixel_um * self._binning

    def render_fluorophores(self, z_um: float, t_s: float, bleach: float) -> np.ndarray:
        """Noise-free fluorophore-equivalents per pixel of the full (binned) sensor."""
        return self._get_renderer().render(
            z_um, self.sensor_shape(), self.pixel_um(), t_s=t_s, bleach_factor=bleach
        )

    def prepare_focus(self) -> None:
        """Compute the object images for the current focus now, not in the first frame.

        No light, no dose, no frame: only the renderer's per-focus cache is filled.
        """
        z = self.bench()._require("stage").get_position_um()
        self.render_fluorophores(z, self.now(), 1.0)

    def snap(self, buffer: np.ndarray) -> dict[str, Any]:
        bench = self.bench()
        stage, led = bench._require("stage"), bench._require("led")
        specimen_dev = bench._require("specimen")
        optics = bench._require("optics").optics
        exposure_ms = self._exposure
        exposure_s = exposure_ms / 1000
        wall_start = time.perf_counter()
        t_start = self.now()
        z = stage.get_position_um()

        irradiance, on_ms, dose = led.record_exposure(exposure_ms)
        # bleaching during the frame: use the dose at mid-exposure
        bleach = specimen_dev.bleach_factor(dose / 2)
        specimen_dev.receive_dose(dose)
        if irradiance > 0:
            fluor = self.render_fluorophores(z, t_start + exposure_s / 2, bleach)
            photons = fluor * photon_scale(optics, irradiance, exposure_s)
        else:
            photons = np.zeros(self.sensor_shape())
        rng = np.random.default_rng([specimen_dev._seed, self._frame_index, 0xCA3])
        self.noise.expose(photons, exposure_s, rng, binning=self._binning, out=buffer)

        if self._clock_mode == "simulated":
            self._virtual_s += exposure_s
        else:
            remaining = exposure_s - (time.perf_counter() - wall_start)
            if remaining > 0:
                time.sleep(remaining)
        meta = {
            "frame_index": self._frame_index,
            "time_s": round(t_start, 6),
            "z_um": z,
            "exposure_ms": exposure_ms,
            "irradiance_W_cm2": irradiance,
            "led_on_ms": on_ms,
            "dose_J_cm2": dose,
            "cumulative_dose_J_cm2": led.cumulative_dose_j_cm2,
            "bleach_factor": bleach,
        }
        self._frame_index += 1
        self.last_frame_metadata = meta
        return meta
