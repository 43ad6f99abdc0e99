"""The passive parts of the simulated microscope, as Micro-Manager devices.

``Optics`` (`OpticsDevice`): objective and media. ``Specimen`` (`SpecimenDevice`):
what is under the objective, and the photobleaching dose it has received. Changing
either makes the camera forget its cached renders.
"""

from __future__ import annotations

import numpy as np
from pymmcore_plus.experimental.unicore import GenericDevice, pymm_property

from ._bench import BenchMember
from ._optics import Optics
from ._render import imaging_for
from ._specimens import DEFAULT_DEPTH_UM, KINDS, Specimen, make_specimen

__all__ = ["OpticsDevice", "SpecimenDevice"]


class OpticsDevice(BenchMember, GenericDevice):
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


class SpecimenDevice(BenchMember, GenericDevice):
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
