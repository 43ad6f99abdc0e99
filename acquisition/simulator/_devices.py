"""The simulated microscope as Micro-Manager Python devices (pymmcore-plus UniMMCore).

Labels in ``hardware_configs/simulator.cfg``: ``Optics``, ``Specimen``, ``Z``, ``LED``,
``Camera``. The devices of one core find each other through a `Bench`, keyed by that
core's event signals (the only core object a Python device can see), so several
simulated microscopes can live in one process.

Light and dose
--------------
The LED is a camera-triggered light source: while it is *open* it illuminates the
sample only during each camera exposure, so the dose per frame is irradiance ×
exposure time (not × frame interval), and out-of-focus planes bleach with the focal
one. `acquisition.DeepzCore` opens it around exposures when autoshutter is on (plain
UniMMCore does not do this for Python shutters).

Time
----
``Camera`` property ``Clock``: ``real`` (default; a frame takes at least its exposure
time, timestamps are wall-clock seconds since the camera started) or ``simulated``
(no waiting: time advances by the exposure at each frame; for fast tests).
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pymmcore_plus.experimental.unicore import (
    GenericDevice,
    ShutterDevice,
    SimpleCameraDevice,
    StageDevice,
    pymm_property,
)

from ._camera_model import CameraNoiseModel
from ._optics import Optics
from ._render import Renderer, imaging_for, photon_scale
from ._specimens import DEFAULT_DEPTH_UM, KINDS, Specimen, make_specimen

SENSOR_PIXELS = 512
SENSOR_PIXEL_UM = 6.5


# ------------------------------------------------------------------------ bench
_BENCHES: dict[int, Bench] = {}


def _key_of(events: Any) -> int:
    return id(events.propertyChanged)


def bench_for(core: Any) -> Bench | None:
    """The simulated bench whose devices are loaded in ``core``, or None."""
    try:
        return _BENCHES.get(_key_of(core.events))
    except AttributeError:
        return None


@dataclass
class Bench:
    """The simulator devices of one core, and the ground truth they share."""

    signal: Any  # keeps the key object alive while the bench exists
    camera: Camera | None = None
    stage: FocusStage | None = None
    led: LED | None = None
    optics: OpticsDevice | None = None
    specimen: SpecimenDevice | None = None

    def _require(self, role: str) -> Any:
        dev = getattr(self, role)
        if dev is None:
            raise RuntimeError(
                f"The simulated microscope has no {role} device loaded; load every "
                "device of hardware_configs/simulator.cfg."
            )
        return dev

    # -- ground truth ----------------------------------------------------------------
    def clean_photons(
        self,
        z_um: float | None = None,
        t_s: float | None = None,
        bleach_factor: float | None = None,
    ) -> np.ndarray:
        """Expected detected photons per pixel (noise-free) of the current frame setup.

        Parameters
        ----------
        z_um : float, optional
            Stage position; defaults to the current one.
        t_s : float, optional
            Time for the worm's activity; defaults to the camera clock's now.
        bleach_factor : float, optional
            Remaining brightness after bleaching; defaults to the specimen's now
            (a recorded frame's metadata holds the factor it was taken with).
        """
        cam = self._require("camera")
        z = self._require("stage").get_position_um() if z_um is None else z_um
        t = cam.now() if t_s is None else t_s
        led = self._require("led")
        spec = self._require("specimen")
        bleach = spec.bleach_factor() if bleach_factor is None else bleach_factor
        fluor = cam.render_fluorophores(z, t, bleach)
        return fluor * photon_scale(
            self._require("optics").optics, led.irradiance(), cam.get_exposure() / 1000
        )

    def clean_image_adu(
        self,
        z_um: float | None = None,
        t_s: float | None = None,
        bleach_factor: float | None = None,
    ) -> np.ndarray:
        """Noise-free mean camera signal (ADU, float) for the current settings."""
        cam = self._require("camera")
        return cam.noise.expected_adu(
            self.clean_photons(z_um, t_s, bleach_factor),
            cam.get_exposure() / 1000,
            binning=cam.get_binning(),
        )

    def objects_table(self) -> dict[str, np.ndarray]:
        """Every emitter of the specimen (nuclei, beads) with where it is in focus.

        Returns columns of equal length: ``x_um``, ``y_um`` (sample plane, from the
        optical axis), ``depth_um`` (below the coverslip), ``radius_um``,
        ``fluorophores`` and ``focus_stage_um``: the stage position at which the
        object's centre is in best focus (index mismatch makes it differ from the
        depth, by about n_immersion / n_sample). Empty columns for a sheet.
        """
        spec = self._require("specimen").specimen
        em = spec.emitters
        if em is None or not len(em):
            empty = np.zeros(0)
            return dict.fromkeys(
                ("x_um", "y_um", "depth_um", "radius_um", "fluorophores",
                 "focus_stage_um"),
                empty,
            )  # fmt: skip
        psf = self._require("camera")._get_renderer().imaging.psf
        # best focus is smooth in depth: solve it on a 1 µm grid and interpolate
        grid = np.arange(
            np.floor(em.depth_um.min()) - 1.0, np.ceil(em.depth_um.max()) + 2.0, 1.0
        )
        focus = np.array([psf.best_focus_stage_um(float(d)) for d in grid])
        return {
            "x_um": em.x_um.copy(),
            "y_um": em.y_um.copy(),
            "depth_um": em.depth_um.copy(),
            "radius_um": em.radius_um.copy(),
            "fluorophores": em.fluorophores.copy(),
            "focus_stage_um": np.interp(em.depth_um, grid, focus),
        }

    def neuron_positions_um(self) -> np.ndarray:
        """(N, 3) array of the worm's nuclei: x, y (µm from the axis), depth (µm)."""
        spec = self._require("specimen").specimen
        if spec.activity is None or spec.emitters is None:
            raise ValueError(
                f"Specimen {spec.kind!r} has no neurons; set Kind to worm."
            )
        em = spec.emitters
        return np.column_stack([em.x_um, em.y_um, em.depth_um])

    def dff(self, t_s: np.ndarray) -> np.ndarray:
        """Ground-truth ΔF/F of every neuron at times ``t_s`` -> (T, N)."""
        spec = self._require("specimen").specimen
        if spec.activity is None:
            raise ValueError(
                f"Specimen {spec.kind!r} has no activity; set Kind to worm."
            )
        return spec.activity.dff(np.atleast_1d(np.asarray(t_s, float)))


class _BenchMember:
    """Mixin: registers a device with its core's bench on initialize."""

    _ROLE: ClassVar[str]

    def initialize(self) -> None:
        signal = self.core.events.propertyChanged  # type: ignore[attr-defined]
        bench = _BENCHES.get(id(signal))
        if bench is None:
            bench = _BENCHES[id(signal)] = Bench(signal=signal)
        setattr(bench, self._ROLE, self)
        self._bench_ref = weakref.ref(bench)
        self._bench_key = id(signal)

    def shutdown(self) -> None:
        bench = _BENCHES.get(getattr(self, "_bench_key", -1))
        if bench is not None and getattr(bench, self._ROLE) is self:
            setattr(bench, self._ROLE, None)
            roles = ("camera", "stage", "led", "optics", "specimen")
            if all(getattr(bench, r) is None for r in roles):
                _BENCHES.pop(self._bench_key, None)

    def bench(self) -> Bench:
        ref = getattr(self, "_bench_ref", None)
        bench = ref() if ref is not None else None
        if bench is None:
            raise RuntimeError(f"{type(self).__name__} is not initialized.")
        return bench


# ---------------------------------------------------------------------- optics
class OpticsDevice(_BenchMember, GenericDevice):
    """Objective and media: NA, magnification, emission wavelength, indices.

    Defaults: 20x / 0.75 NA air objective imaging into water, 525 nm emission.
    """

    _ROLE = "optics"

    def __init__(self) -> None:
        super().__init__()
        self.optics = Optics()

    def _replace(self, **changes: float) -> None:
        from dataclasses import replace

        self.optics = replace(self.optics, **changes)  # validates
        bench = getattr(self, "_bench_ref", lambda: None)()
        if bench is not None and bench.camera is not None:
            bench.camera.invalidate()

    @pymm_property(limits=(0.05, 1.7), name="NA")
    def na(self) -> float:
        """Numerical aperture."""
        return self.optics.na

    @na.setter
    def na(self, value: float) -> None:
        self._replace(na=float(value))

    @pymm_property(limits=(1.0, 150.0), name="Magnification")
    def magnification(self) -> float:
        return self.optics.magnification

    @magnification.setter
    def magnification(self, value: float) -> None:
        self._replace(magnification=float(value))

    @pymm_property(limits=(350.0, 900.0), name="EmissionWavelength_nm")
    def emission_wavelength_nm(self) -> float:
        return self.optics.wavelength_um * 1000

    @emission_wavelength_nm.setter
    def emission_wavelength_nm(self, value: float) -> None:
        self._replace(wavelength_um=float(value) / 1000)

    @pymm_property(limits=(1.0, 1.6), name="ImmersionIndex")
    def immersion_index(self) -> float:
        return self.optics.n_immersion

    @immersion_index.setter
    def immersion_index(self, value: float) -> None:
        self._replace(n_immersion=float(value))

    @pymm_property(limits=(1.0, 1.6), name="SampleIndex")
    def sample_index(self) -> float:
        return self.optics.n_sample

    @sample_index.setter
    def sample_index(self, value: float) -> None:
        self._replace(n_sample=float(value))

    @pymm_property(is_read_only=True, name="SamplePixelSize_um")
    def sample_pixel_um(self) -> float:
        """Camera pixel projected into the sample (µm, without binning)."""
        return self.optics.sample_pixel_um


# --------------------------------------------------------------------- specimen
class SpecimenDevice(_BenchMember, GenericDevice):
    """What is under the objective: worm, beads, single-bead, tilted/curved sheet."""

    _ROLE = "specimen"

    def __init__(self) -> None:
        super().__init__()
        self._kind = "worm"
        self._seed = 0
        self._depth = DEFAULT_DEPTH_UM["worm"]
        self._bleach_rate = 0.01
        self._received_dose = 0.0
        self._specimen: Specimen | None = None

    @property
    def specimen(self) -> Specimen:
        if self._specimen is None:
            self._specimen = make_specimen(self._kind, self._seed, self._depth)
        return self._specimen

    def _rebuild(self) -> None:
        self._specimen = None
        self._received_dose = 0.0
        bench = getattr(self, "_bench_ref", lambda: None)()
        if bench is not None and bench.camera is not None:
            bench.camera.invalidate()

    def receive_dose(self, dose_j_cm2: float) -> None:
        self._received_dose += dose_j_cm2

    def bleach_factor(self, extra_dose: float = 0.0) -> float:
        """exp(−k · D): remaining brightness after the cumulative dose D (J/cm²)."""
        return float(np.exp(-self._bleach_rate * (self._received_dose + extra_dose)))

    @pymm_property(allowed_values=KINDS, name="Kind")
    def kind(self) -> str:
        return self._kind

    @kind.setter
    def kind(self, value: str) -> None:
        if value != self._kind:
            self._kind = value
            self._depth = DEFAULT_DEPTH_UM[value]
            self._rebuild()

    @pymm_property(limits=(0, 2**31 - 1), name="Seed")
    def seed(self) -> int:
        return self._seed

    @seed.setter
    def seed(self, value: int) -> None:
        self._seed = int(value)
        self._rebuild()

    @pymm_property(limits=(0.0, 200.0), name="Depth")
    def depth(self) -> float:
        """Depth of the specimen's centre below the coverslip (µm)."""
        return self._depth

    @depth.setter
    def depth(self, value: float) -> None:
        self._depth = float(value)
        self._rebuild()

    @pymm_property(limits=(0.0, 100.0), name="BleachRate_cm2_per_J")
    def bleach_rate_cm2_per_j(self) -> float:
        """Photobleaching constant k in exp(−k · dose)."""
        return self._bleach_rate

    @bleach_rate_cm2_per_j.setter
    def bleach_rate_cm2_per_j(self, value: float) -> None:
        self._bleach_rate = float(value)

    @pymm_property(is_read_only=True, name="ReceivedDose_J_cm2")
    def received_dose_j_cm2(self) -> float:
        return self._received_dose

    @pymm_property(is_read_only=True, name="FocusZ")
    def focus_z(self) -> float:
        """Stage position (µm) that brings the specimen's centre plane into focus."""
        optics = self.bench()._require("optics").optics
        return round(imaging_for(optics).psf.best_focus_stage_um(self._depth), 3)


# ------------------------------------------------------------------------ stage
class FocusStage(_BenchMember, StageDevice):
    """Objective focus drive (µm). 0 focuses the coverslip surface; limits enforced."""

    _ROLE = "stage"
    LOWER_UM: ClassVar[float] = -50.0
    UPPER_UM: ClassVar[float] = 250.0

    def __init__(self) -> None:
        super().__init__()
        self._z = 0.0

    def set_position_um(self, val: float) -> None:
        val = float(val)
        if not self.LOWER_UM <= val <= self.UPPER_UM:
            raise ValueError(
                f"Z position {val:g} µm is outside the focus drive's range "
                f"[{self.LOWER_UM:g}, {self.UPPER_UM:g}] µm; choose a position or "
                "z-range inside it."
            )
        self._z = val

    def get_position_um(self) -> float:
        return self._z

    def home(self) -> None:
        self._z = 0.0

    def stop(self) -> None:
        pass

    def set_origin(self) -> None:
        raise NotImplementedError("The simulated focus drive has a fixed origin.")

    @pymm_property(is_read_only=True, name="LowerLimit")
    def lower_limit(self) -> float:
        return self.LOWER_UM

    @pymm_property(is_read_only=True, name="UpperLimit")
    def upper_limit(self) -> float:
        return self.UPPER_UM


# -------------------------------------------------------------------------- LED
class LED(_BenchMember, ShutterDevice):
    """Camera-triggered 488 nm LED with intensity and a dose ledger."""

    _ROLE = "led"

    def __init__(self) -> None:
        super().__init__()
        self._open = False
        self._intensity = 20.0
        self._max_irradiance = 1.0
        self._cumulative = 0.0
        self._on_ms = 0.0

    def get_open(self) -> bool:
        return self._open

    def set_open(self, open: bool) -> None:
        self._open = bool(open)

    def irradiance(self) -> float:
        """Irradiance at the sample while on (W/cm²)."""
        return self._max_irradiance * self._intensity / 100

    def record_exposure(self, exposure_ms: float) -> tuple[float, float, float]:
        """Account one camera exposure: returns (irradiance, on-time ms, dose J/cm²)."""
        if not self._open:
            return 0.0, 0.0, 0.0
        irr = self.irradiance()
        dose = irr * exposure_ms / 1000
        self._cumulative += dose
        self._on_ms += exposure_ms
        return irr, exposure_ms, dose

    @pymm_property(limits=(0.0, 100.0), name="Intensity")
    def intensity(self) -> float:
        """LED power, % of maximum."""
        return self._intensity

    @intensity.setter
    def intensity(self, value: float) -> None:
        self._intensity = float(value)

    @pymm_property(limits=(0.0, 100.0), name="MaxIrradiance_W_cm2")
    def max_irradiance_w_cm2(self) -> float:
        """Irradiance at the sample at 100 % (W/cm²)."""
        return self._max_irradiance

    @max_irradiance_w_cm2.setter
    def max_irradiance_w_cm2(self, value: float) -> None:
        self._max_irradiance = float(value)

    @pymm_property(is_read_only=True, name="Irradiance_W_cm2")
    def irradiance_w_cm2(self) -> float:
        return self.irradiance()

    @pymm_property(is_read_only=True, name="CumulativeDose_J_cm2")
    def cumulative_dose_j_cm2(self) -> float:
        return self._cumulative

    @pymm_property(is_read_only=True, name="CumulativeOnTime_ms")
    def cumulative_on_time_ms(self) -> float:
        return self._on_ms


# ----------------------------------------------------------------------- camera
class Camera(_BenchMember, SimpleCameraDevice):
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
