"""Widefield optics: a vectorial pupil-function PSF and radially symmetric imaging.

Physics
-------
The PSF of an isotropic (freely rotating) fluorescent emitter is computed with the
vectorial Richards-Wolf integrals as formulated for fluorescence microscopes by
Aguet et al. (Opt. Express 17, 6829, 2009; after Török and Haeberlé), with Fresnel
transmission through the sample/coverslip and coverslip/immersion interfaces::

    I0(r) = ∫ B0(θ) [ts1 ts2 + tp1 tp2 cosθs] dθ
    I1(r) = ∫ B1(θ) [tp1 tp2 (ni/ns) sinθ] dθ
    I2(r) = ∫ B2(θ) [ts1 ts2 − tp1 tp2 cosθs] dθ
    Bm(θ) = √cosθ · sinθ · Jm(k0 ni r sinθ) · exp(i k0 Λ(θ))
    PSF(r) = |I0|² + 2|I1|² + |I2|²

with θ the ray angle in the immersion medium (ni sinθ = ns sinθs = ng sinθg). The
optical path difference is Gibson and Lanni's (J. Opt. Soc. Am. A 8, 1601, 1991) for an
emitter at depth ``zp`` below the coverslip and the objective at stage position ``z``
(µm; ``z = 0`` focuses the coverslip surface; coverslip and immersion match their
design values)::

    Λ(θ) = zp · ns cosθs − z · ni cosθi

(an emitter's path through ``zp`` of sample, minus the immersion layer the objective
removes when it moves by ``z``). psfmodels (Aguet's code) uses the shifted axial
coordinate ``zv = z + zp (1 − ni/ns)``, which puts the paraxial focus at ``zv = zp``;
the shapes agree (tests/acquisition/simulator/test_sim_optics.py). The index mismatch
between immersion (air by default) and sample (water) makes the PSF depend on depth,
shifts the focus and breaks its symmetry about focus.

Everything here is radially symmetric, so images of round objects (points, spheres,
discs) are handled as radial profiles. Convolutions are products in Hankel space;
only the final pixel integration happens on the 2-D camera grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import special


@dataclass(frozen=True)
class Optics:
    """Objective, media and camera geometry of a widefield microscope.

    Parameters
    ----------
    na : float
        Numerical aperture of the objective.
    magnification : float
        Total magnification from sample to camera.
    wavelength_um : float
        Emission wavelength (µm).
    n_immersion : float
        Refractive index of the immersion medium (1.0 for a dry objective).
    n_sample : float
        Refractive index of the sample (1.33 for water).
    n_coverslip : float
        Refractive index of the coverslip (design and actual).
    camera_pixel_um : float
        Physical pixel pitch of the camera sensor (µm).
    """

    na: float = 0.75
    magnification: float = 20.0
    wavelength_um: float = 0.525
    n_immersion: float = 1.0
    n_sample: float = 1.33
    n_coverslip: float = 1.515
    camera_pixel_um: float = 6.5

    def __post_init__(self) -> None:
        if not 0 < self.na < self.n_immersion:
            raise ValueError(
                f"NA {self.na} must be positive and below the immersion index "
                f"{self.n_immersion}: set a smaller NA or a higher immersion index."
            )
        if self.na >= self.n_sample:
            raise ValueError(
                f"NA {self.na} must be below the sample index {self.n_sample}."
            )
        for name in ("magnification", "wavelength_um", "camera_pixel_um"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def sample_pixel_um(self) -> float:
        """Camera pixel size projected into the sample (µm)."""
        return self.camera_pixel_um / self.magnification

    @property
    def nyquist_pixel_um(self) -> float:
        """Largest sample pixel that samples the in-focus PSF at Nyquist, λ/(4 NA)."""
        return self.wavelength_um / (4 * self.na)

    @property
    def otf_cutoff_per_um(self) -> float:
        """Incoherent cutoff frequency 2 NA / λ (cycles per µm)."""
        return 2 * self.na / self.wavelength_um

    @property
    def depth_of_field_um(self) -> float:
        """Classical widefield depth of field λ n / NA² + n e / (M NA) (µm)."""
        n = self.n_immersion
        wave = self.wavelength_um * n / self.na**2
        geometric = n * self.camera_pixel_um / (self.magnification * self.na)
        return wave + geometric

    @property
    def collection_efficiency(self) -> float:
        """Fraction of isotropic emission inside the objective's cone in the sample."""
        theta_s = np.arcsin(self.na / self.n_sample)
        return float((1 - np.cos(theta_s)) / 2)


class VectorialPSF:
    """Radial PSF profiles of one `Optics`, for many (depth, stage) pairs at once.

    The pupil integrals are evaluated by Gauss-Legendre quadrature, as matrix products
    ``Bessel(r, θ) @ phase(θ, pair)``, so a batch of emitter depths costs about as much
    as one. Profiles are normalised so that each integrates to 1 over the image plane
    (the total is independent of defocus by Parseval's theorem: widefield loses no
    out-of-focus light), expressed in sample coordinates (µm⁻²).

    Parameters
    ----------
    optics : Optics
        The microscope.
    r_max_um : float
        Largest radius of the profiles (µm); defocus blur must stay inside it.
    dr_um : float
        Radial sampling (µm).
    n_theta : int
        Quadrature nodes over the pupil.
    """

    def __init__(
        self,
        optics: Optics,
        *,
        r_max_um: float = 32.0,
        dr_um: float = 0.02,
        n_theta: int = 400,
    ) -> None:
        self.optics = optics
        self.r_um = np.arange(0.0, r_max_um + dr_um / 2, dr_um)
        nodes, weights = np.polynomial.legendre.leggauss(n_theta)
        alpha = np.arcsin(optics.na / optics.n_immersion)
        self._theta = (nodes + 1) * alpha / 2
        self._dtheta = weights * alpha / 2
        self._k0 = 2 * np.pi / optics.wavelength_um

    # -- pupil terms ------------------------------------------------------------------
    @cached_property
    def _angles(self) -> dict[str, np.ndarray]:
        o = self.optics
        sin_i = np.sin(self._theta)
        cos_i = np.cos(self._theta)
        sin_s = o.n_immersion * sin_i / o.n_sample
        cos_s = np.sqrt(1 - sin_s**2)
        sin_g = o.n_immersion * sin_i / o.n_coverslip
        cos_g = np.sqrt(1 - sin_g**2)
        return {"sin_i": sin_i, "cos_i": cos_i, "cos_s": cos_s, "cos_g": cos_g}

    @cached_property
    def _pupil_terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Angular amplitude of the three vectorial integrals (without the phase)."""
        o = self.optics
        a = self._angles
        ns, ng, ni = o.n_sample, o.n_coverslip, o.n_immersion
        cos_s, cos_g, cos_i, sin_i = a["cos_s"], a["cos_g"], a["cos_i"], a["sin_i"]
        # Fresnel transmission: sample -> coverslip (1), coverslip -> immersion (2)
        ts1 = 2 * ns * cos_s / (ns * cos_s + ng * cos_g)
        tp1 = 2 * ns * cos_s / (ng * cos_s + ns * cos_g)
        ts2 = 2 * ng * cos_g / (ng * cos_g + ni * cos_i)
        tp2 = 2 * ng * cos_g / (ni * cos_g + ng * cos_i)
        ts, tp = ts1 * ts2, tp1 * tp2
        apod = np.sqrt(cos_i) * sin_i * self._dtheta
        a0 = apod * (ts + tp * cos_s)
        a1 = apod * (tp * ni * sin_i / ns)
        a2 = apod * (ts - tp * cos_s)
        return a0, a1, a2

    @cached_property
    def _bessel(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        arg = (
            self._k0
            * self.optics.n_immersion
            * np.outer(self.r_um, self._angles["sin_i"])
        )
        a0, a1, a2 = self._pupil_terms
        return special.j0(arg) * a0, special.j1(arg) * a1, special.jv(2, arg) * a2

    @cached_property
    def _energy(self) -> float:
        """Total energy of any profile, from the pupil (Parseval), in profile units."""
        a0, a1, a2 = self._pupil_terms
        sin_i = self._angles["sin_i"]
        # ∫|∫ g(θ) Jm(k ni r sinθ) dθ|² r dr = 1/(k ni)² ∫ |g|² / (sinθ cosθ) dθ
        # with g = apod·amplitude (apod carries the quadrature weight dθ).
        w = self._dtheta
        dens = (a0**2 + 2 * a1**2 + a2**2) / w**2 / (sin_i * self._angles["cos_i"])
        return float(
            2 * np.pi / (self._k0 * self.optics.n_immersion) ** 2 * np.sum(dens * w)
        )

    def _opd(self, depth_um: np.ndarray, stage_z_um: np.ndarray) -> np.ndarray:
        """Optical path difference Λ(θ) (µm) for each (depth, stage) pair -> (θ, pair).

        Gibson-Lanni with matched coverslip and immersion: the emitter's path through
        ``depth`` of sample minus the change of immersion thickness when the objective
        moves by ``stage_z``. At ``depth = stage_z = 0`` the pupil is flat (in focus).
        """
        o = self.optics
        a = self._angles
        ns_cos = o.n_sample * a["cos_s"][:, None]
        ni_cos = o.n_immersion * a["cos_i"][:, None]
        return ns_cos * depth_um[None, :] - ni_cos * stage_z_um[None, :]

    def profiles(
        self, depth_um: np.ndarray, stage_z_um: np.ndarray | float
    ) -> np.ndarray:
        """Radial intensity profiles, shape (pairs, r), each integrating to 1 (µm⁻²).

        Parameters
        ----------
        depth_um : array
            Emitter depths below the coverslip (µm, ≥ 0).
        stage_z_um : array
            Objective positions (µm; 0 focuses the coverslip surface). Broadcast
            against ``depth_um``.
        """
        depth, stage = np.broadcast_arrays(
            np.atleast_1d(np.asarray(depth_um, float)),
            np.atleast_1d(np.asarray(stage_z_um, float)),
        )
        phase = np.exp(1j * self._k0 * self._opd(depth.ravel(), stage.ravel()))
        intensity = np.zeros((self.r_um.size, phase.shape[1]))
        for m, bessel in enumerate(self._bessel):
            field_sq = (bessel @ phase.real) ** 2 + (bessel @ phase.imag) ** 2
            intensity += field_sq * (2 if m == 1 else 1)
        return (intensity / self._energy).T

    def best_focus_stage_um(self, depth_um: float, *, search_um: float = 4.0) -> float:
        """Stage position that maximises the on-axis intensity of an emitter at depth.

        Paraxially the focus moves by ns/ni per µm of stage; at high NA the best focus
        differs, so it is found numerically (to 10 nm).
        """
        o = self.optics
        guess = depth_um * o.n_immersion / o.n_sample
        lo, hi = guess - search_um, guess + search_um
        for step in (0.2, 0.01):
            grid = np.arange(lo, hi + step / 2, step)
            peak = self.profiles(np.full(grid.size, depth_um), grid)[:, 0]
            best = float(grid[int(np.argmax(peak))])
            lo, hi = best - 2 * step, best + 2 * step
        return best


class HankelImaging:
    """Images of round objects (points, solid spheres) as radial profiles.

    The image of a sphere is the sum over its depth slices of (disc ⊛ PSF at that
    slice's depth). In Hankel space a convolution of radial functions is a product, so
    each object costs a few small matrix products instead of 2-D convolutions.
    """

    def __init__(self, psf: VectorialPSF, *, depth_step_um: float = 0.2) -> None:
        self.psf = psf
        self.depth_step_um = depth_step_um
        r = psf.r_um
        dr = r[1] - r[0]
        q_max = 1.02 * psf.optics.otf_cutoff_per_um  # OTF vanishes beyond the cutoff
        # Spectra are smooth in q (features ≥ 1/r_max wide): sample them every
        # 1/(8 r_max). The inverse transform must resolve J0(2π q r), which oscillates
        # with period 1/r, finely: integrate on a grid 4x finer, treating the spectrum
        # as piecewise linear between coarse samples (exact for such spectra). With
        # a plain trapezoid on the coarse grid the energy of far-out light is 2.5 % off.
        dq = 1 / (8 * r[-1])
        self.q = np.arange(0.0, q_max + dq, dq)
        fine = np.linspace(0.0, self.q[-1], 4 * (self.q.size - 1) + 1)
        dq_fine = fine[1] - fine[0]
        wr = np.full(r.size, dr)  # trapezoid weights
        wr[[0, -1]] = dr / 2
        wq = np.full(fine.size, dq_fine)
        wq[[0, -1]] = dq_fine / 2
        forward = 2 * np.pi * special.j0(2 * np.pi * np.outer(self.q, r)) * (r * wr)
        inverse_fine = (
            2 * np.pi * special.j0(2 * np.pi * np.outer(r, fine)) * (fine * wq)
        )  # (r, fine q)
        # linear interpolation from the coarse to the fine grid, as a matrix
        pos = fine / dq
        lo = np.minimum(pos.astype(int), self.q.size - 2)
        frac = pos - lo
        interp = np.zeros((fine.size, self.q.size))
        interp[np.arange(fine.size), lo] = 1 - frac
        interp[np.arange(fine.size), lo + 1] += frac
        self._forward = forward.astype(np.float32)  # (q, r)
        self._inverse = (inverse_fine @ interp).astype(np.float32)  # (r, q)
        # the Airy spectrum of a disc, 2 J1(u)/u, tabulated for fast lookup
        u_max = 2 * np.pi * self.q[-1] * 20.0  # discs up to 20 µm radius
        self._airy_u = np.linspace(0.0, u_max, 200_001)
        with np.errstate(invalid="ignore", divide="ignore"):
            airy = 2 * special.j1(self._airy_u) / self._airy_u
        airy[0] = 1.0
        self._airy = airy

    def sphere_profiles(
        self,
        centre_depth_um: np.ndarray,
        radius_um: np.ndarray,
        stage_z_um: float,
    ) -> np.ndarray:
        """Radial image profiles (objects, r) of uniform spheres, unit total energy.

        A radius of 0 gives a point emitter at its exact depth. Spheres are cut into
        slices ``depth_step_um`` thick, on a common depth grid so that slices of
        different objects share PSFs; each slice is a disc whose Fourier transform is
        the Airy pattern ``2 J1(2π q ρ) / (2π q ρ)``, weighted by its area.
        """
        centre = np.asarray(centre_depth_um, float)
        radius = np.asarray(radius_um, float)
        step = self.depth_step_um
        depths, rhos, weights, counts = [], [], [], []
        for zc, rad in zip(centre, radius, strict=True):
            if rad < step:
                depths.append(np.array([zc]))
                rhos.append(np.zeros(1))
                weights.append(np.ones(1))
            else:
                grid = np.arange(
                    np.ceil((zc - rad) / step), np.floor((zc + rad) / step) + 1
                )
                offsets = grid * step - zc
                rho = np.sqrt(np.maximum(rad**2 - offsets**2, 0.0))
                depths.append(grid * step)
                rhos.append(rho)
                weights.append(rho**2 / np.sum(rho**2))
            counts.append(depths[-1].size)
        depth = np.maximum(np.concatenate(depths), 0.0)
        rho = np.concatenate(rhos)
        weight = np.concatenate(weights).astype(np.float32)

        # one PSF per distinct slice depth (1 nm tolerance)
        unique_depths, inverse = np.unique(np.round(depth, 3), return_inverse=True)
        otf = self.otf(unique_depths, stage_z_um).astype(np.float32)  # (unique, q)
        arg = (2 * np.pi * rho)[:, None] * self.q[None, :]
        disc = np.interp(arg, self._airy_u, self._airy).astype(np.float32)
        contrib = (weight[:, None] * disc) * otf[inverse.ravel()]  # (slices, q)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        spectra = np.add.reduceat(contrib, starts, axis=0)
        return (spectra @ self._inverse.T).astype(np.float64)

    def otf(self, depth_um: np.ndarray, stage_z_um: float) -> np.ndarray:
        """Radial OTFs (depths, q) of point emitters at the given depths."""
        profiles = self.psf.profiles(np.asarray(depth_um, float), stage_z_um)
        return profiles @ self._forward.T


def encircled_radius(
    r_um: np.ndarray, profiles: np.ndarray, fraction: float
) -> np.ndarray:
    """Radius (µm) that holds ``fraction`` of each profile's energy."""
    ring = 2 * np.pi * r_um * profiles
    cumulative = np.cumsum(ring, axis=-1) * (r_um[1] - r_um[0])
    total = cumulative[..., -1:]
    idx = np.argmax(cumulative >= fraction * total, axis=-1)
    return r_um[idx]


def pixelate_profile(
    r_um: np.ndarray,
    profile: np.ndarray,
    centre_px: tuple[float, float],
    half_size_px: int,
    pixel_um: float,
    oversample: int,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Integrate a radial profile over square camera pixels around a sub-pixel centre.

    Parameters
    ----------
    centre_px : (row, col)
        Object centre in pixel coordinates (pixel (0, 0) spans [-0.5, 0.5]).
    half_size_px : int
        The kernel covers ``2 * half_size_px + 1`` pixels on each side of the pixel that
        contains the centre.

    Returns
    -------
    kernel : ndarray
        Energy per pixel (dimensionless fraction of the profile's total).
    origin : (row, col)
        Pixel index of the kernel's top-left corner.
    """
    row0 = int(np.floor(centre_px[0] + 0.5)) - half_size_px
    col0 = int(np.floor(centre_px[1] + 0.5)) - half_size_px
    n = 2 * half_size_px + 1
    sub = (np.arange(n * oversample) + 0.5) / oversample - 0.5  # sub-pixel centres
    ys = (row0 + sub - centre_px[0]) * pixel_um
    xs = (col0 + sub - centre_px[1]) * pixel_um
    dist = np.hypot(ys[:, None], xs[None, :])
    values = np.interp(dist, r_um, profile, right=0.0)
    kernel = values.reshape(n, oversample, n, oversample).mean(axis=(1, 3))
    return kernel * pixel_um**2, (row0, col0)
