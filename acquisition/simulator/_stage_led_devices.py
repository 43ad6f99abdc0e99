"""The simulated focus drive (``Z``, `FocusStage`) and light source (``LED``).

Light and dose
--------------
The LED is a camera-triggered light source: while it is *open* it illuminates the
sample only during each camera exposure, so the dose per frame is irradiance ×
exposure time (not × frame interval), and out-of-focus planes bleach with the focal
one. `acquisition.DeepzCore` opens it around exposures when autoshutter is on (plain
UniMMCore does not do this for Python shutters).
"""

from __future__ import annotations

from typing import ClassVar

from pymmcore_plus.experimental.unicore import (
    ShutterDevice,
    StageDevice,
    pymm_property,
)

from ._bench import BenchMember

__all__ = ["LED", "FocusStage"]


class FocusStage(BenchMember, StageDevice):
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


class LED(BenchMember, ShutterDevice):
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
