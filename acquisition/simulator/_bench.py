"""The `Bench`: the simulated devices of one core and the ground truth they share.

Labels in ``hardware_configs/simulator.cfg``: ``Optics``, ``Specimen``, ``Z``, ``LED``,
``Camera``. The devices of one core find each other through a `Bench`, keyed by that
core's event signals (the only core object a Python device can see), so several
simulated microscopes can live in one process. Every device class mixes in
`BenchMember`, which registers it with its core's bench on initialize; `bench_for`
finds the bench behind a core.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ._render import photon_scale

if TYPE_CHECKING:
    from ._camera_device import Camera
    from ._optics_devices import OpticsDevice, SpecimenDevice
    from ._stage_led_devices import LED, FocusStage

__all__ = ["Bench", "BenchMember", "bench_for"]


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


class BenchMember:
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
