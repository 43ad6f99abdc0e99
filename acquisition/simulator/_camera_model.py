"""sCMOS camera model after EMVA Standard 1288 (release 4.0).

photons × QE → Poisson electrons (+ Poisson dark current) → + Gaussian read noise
→ × system gain K (ADU/e⁻) → + offset → round → clip to the bit depth.

Defaults describe a cooled scientific CMOS camera (6.5 µm pixels, 0.46 e⁻/ADU, ~1.4 e⁻
read noise, ~30 000 e⁻ full well), as in the data sheets of common 2048² sCMOS cameras.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraNoiseModel:
    """Photon-transfer parameters of one camera.

    Parameters
    ----------
    quantum_efficiency : float
        Fraction of photons that become photo-electrons (at the emission wavelength).
    read_noise_e : float
        Temporal dark noise, electrons rms per pixel.
    dark_current_e_per_s : float
        Dark current, electrons per pixel per second.
    gain_adu_per_e : float
        Overall system gain K (digital units per electron).
    offset_adu : float
        Dark offset added to every pixel (ADU).
    full_well_e : float
        Saturation capacity (electrons).
    bit_depth : int
        ADC bit depth; values are clipped to ``[0, 2**bit_depth - 1]``.
    """

    quantum_efficiency: float = 0.82
    read_noise_e: float = 1.4
    dark_current_e_per_s: float = 0.5
    gain_adu_per_e: float = 2.17
    offset_adu: float = 100.0
    full_well_e: float = 30_000.0
    bit_depth: int = 16

    @property
    def max_adu(self) -> int:
        return 2**self.bit_depth - 1

    def mean_electrons(self, photons: np.ndarray, exposure_s: float) -> np.ndarray:
        """Expected electrons per pixel (signal + dark current)."""
        return self.quantum_efficiency * np.asarray(photons) + (
            self.dark_current_e_per_s * exposure_s
        )

    def expected_adu(
        self, photons: np.ndarray, exposure_s: float, *, binning: int = 1
    ) -> np.ndarray:
        """Noise-free mean of the digital signal (before rounding and clipping)."""
        dark = self.dark_current_e_per_s * exposure_s * binning**2
        electrons = self.quantum_efficiency * np.asarray(photons) + dark
        return self.offset_adu + self.gain_adu_per_e * electrons

    def expected_variance_adu(
        self, photons: np.ndarray, exposure_s: float, *, binning: int = 1
    ) -> np.ndarray:
        """Temporal variance of the digital signal: K² (μe + b² σd²) + 1/12."""
        dark = self.dark_current_e_per_s * exposure_s * binning**2
        electrons = self.quantum_efficiency * np.asarray(photons) + dark
        read_var = binning**2 * self.read_noise_e**2
        return self.gain_adu_per_e**2 * (electrons + read_var) + 1 / 12

    def expose(
        self,
        photons: np.ndarray,
        exposure_s: float,
        rng: np.random.Generator,
        *,
        binning: int = 1,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Digitise a map of expected photons per pixel into a uint16 frame.

        Binning is digital (sCMOS): ``binning²`` sensor pixels are summed, so dark
        current and read-noise variance scale with ``binning²``.
        """
        dark = self.dark_current_e_per_s * exposure_s * binning**2
        mean_e = np.asarray(photons, dtype=np.float64) * self.quantum_efficiency + dark
        electrons = rng.poisson(mean_e).astype(np.float32)
        np.minimum(electrons, self.full_well_e * binning**2, out=electrons)
        read = rng.standard_normal(electrons.shape, dtype=np.float32)
        electrons += read * np.float32(binning * self.read_noise_e)
        adu = electrons * np.float32(self.gain_adu_per_e)
        adu += np.float32(self.offset_adu + 0.5)  # +0.5 then floor == round
        np.clip(adu, 0, self.max_adu, out=adu)
        if out is None:
            out = np.empty(adu.shape, dtype=np.uint16)
        np.floor(adu, out=adu)
        out[...] = adu
        return out
