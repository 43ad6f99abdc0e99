"""Ideal-observer bound on the depth one frame tells of simulated worm nuclei.

For every object `deepz evaluate` scores (3-D maxima of the clean twin in the 256²
centre crop, laterally isolated by 2.5 µm, within ±7 µm of one of the 3 input planes
per stack), and for each light level, fit the nucleus's depth from ONE frame at the
input plane by maximum likelihood under the camera's noise model (Gaussian
approximation with the expected variance, K·(μ−offset) + K²σ_read² + 1/12 ADU²).

Observers (all know the nucleus's lateral position and the rest of the specimen's
noise-free image exactly):
  known  : also the nucleus's brightness and radius; only its depth is unknown.
           mean(d) = clean + W·(U(d) − U(d_true))   (exactly the clean twin at d_true)
  amp    : brightness unknown (free amplitude a ≥ 0, profiled out), radius known.
           mean(d, a) = C + a·U(d),   C = clean − W·U(d_true)
  ampr   : brightness and radius unknown (radius on a grid 1.0..1.5 µm).
  ampbg  : brightness unknown, radius known, and the rest of the specimen NOT known:
           its light in the patch is an unknown plane b0 + b1·y + b2·x (extra, harsher;
           real 1x frame only).
U(d): unit-energy image of a uniform sphere at depth d through the simulator's own
HankelImaging (sphere_profiles) + pixel integration (pixelate_profile, 3x3 sub-pixels).

Light levels: the expected signal above offset+dark is scaled by s and noise is drawn
with the simulator's CameraNoiseModel.expose (Poisson electrons, Gaussian read noise,
gain, offset, rounding). At s = 1 the real recorded frame is scored as well.

Needs the fresh simulated worms of `scripts/make_simulator_stacks.sh` (with their
noise-free twins). Writes OUT/rows.csv (one row per object and input plane) and
OUT/meta.json; `benchmarks/depth_information_summary.py OUT` prints the tables (README,
"How much depth one frame holds"). About 25 min on one CPU core for the five worms:

    OMP_NUM_THREADS=1 python benchmarks/bench_depth_information.py \
        [--data runs/simulator-stacks/fresh] [--out runs/depth-information] \
        [--stacks 900 901 ...] [--levels 0.1 0.3 1 3 10] [--limit N]
    python benchmarks/depth_information_summary.py runs/depth-information
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

import deepz_live
from deepz_live.acquisition import read_frame_metadata, read_run_metadata
from deepz_live.acquisition.simulator import (
    CameraNoiseModel,
    Optics,
    Renderer,
    make_specimen,
    photon_scale,
)

# The private imports have no public seam yet: the simulator's cached imaging for one
# set of optics, and the object finder, crop window and input planes of `deepz
# evaluate` (the objects scored here must be exactly the ones it scores).
from deepz_live.acquisition.simulator._render import imaging_for
from deepz_live.inference import read_stacks
from deepz_live.inference._depth import find_objects, isolated
from deepz_live.inference._evaluate import centre_crop_window, choose_input_planes

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from deepz_live.acquisition.simulator import HankelImaging, Specimen, VectorialPSF
    from deepz_live.acquisition.simulator._specimens import Emitters
    from deepz_live.inference import ZStack

DATA = Path("runs/simulator-stacks/fresh")
OUT = Path("runs/depth-information")
STACKS = (900, 901, 902, 903, 904)
LEVELS = (0.1, 0.3, 1.0, 3.0, 10.0)
DZ_RANGE_UM = 10.0  # the models' ±range (evaluate: axial range = range − 3 = 7 µm)
AXIAL_RANGE_UM = 7.0
INPUTS_PER_STACK = 3
CROP = 256
ISOLATION_UM = 2.5
MIN_DEPTH_UM = 0.5  # shallowest depth hypothesis (below the coverslip)
DEPTH_STEP_UM = 0.1  # hypothesis grid (depth below coverslip); parabola-refined
PATCH_HALF_PX = 32  # likelihood patch: 65x65 px (21 µm) around the nucleus, in the crop
RADII = (1.0, 1.125, 1.25, 1.375, 1.5)  # the worm's nuclei span 1.0-1.5 µm
OVERSAMPLE = 3
MATCH_PX = 2.0  # an evaluate object and a simulated nucleus at most this far apart
AMPLITUDE_ITERATIONS = 3  # re-weightings of the amplitude fit (variance follows mean)
NOISE_SEED_TAG = 0x1DEA  # last word of every simulated frame's noise seed
RECORDED = "real1"  # name of the recorded frame's columns

Row = dict[str, Any]  # one line of rows.csv
Frames = dict[str, tuple[float, np.ndarray]]  # name -> (light level, frame in ADU)


def optics_and_camera(
    run_metadata: dict[str, Any],
) -> tuple[Optics, CameraNoiseModel, dict[str, str]]:
    """The simulator's optics, camera and specimen settings recorded with a run.

    Parameters
    ----------
    run_metadata : dict
        `read_run_metadata` of a simulated stack.

    Returns
    -------
    optics : Optics
        The objective and sample as the simulator imaged them.
    camera : CameraNoiseModel
        The camera's photon-transfer parameters.
    specimen : dict
        The ``Specimen`` device's properties (``Kind``, ``Seed``, ``Depth``, ...).
    """
    devices = run_metadata["devices"]
    optics_props, camera_props = devices["Optics"], devices["Camera"]
    optics = Optics(
        na=float(optics_props["NA"]),
        magnification=float(optics_props["Magnification"]),
        wavelength_um=float(optics_props["EmissionWavelength_nm"]) / 1000,
        n_immersion=float(optics_props["ImmersionIndex"]),
        n_sample=float(optics_props["SampleIndex"]),
    )
    camera = CameraNoiseModel(
        quantum_efficiency=float(camera_props["QuantumEfficiency"]),
        read_noise_e=float(camera_props["ReadNoise_e"]),
        dark_current_e_per_s=float(camera_props["DarkCurrent_e_per_s"]),
        gain_adu_per_e=float(camera_props["Gain"]),
        offset_adu=float(camera_props["Offset"]),
    )
    return optics, camera, devices["Specimen"]


@dataclass(frozen=True)
class FocusMap:
    """Depth below the coverslip <-> stage position of best focus.

    Solved on a 1 µm depth grid and interpolated, as the simulator's objects table
    (``focus_z_um`` of ``*.objects.csv``) does.
    """

    depths_um: np.ndarray
    stages_um: np.ndarray

    @classmethod
    def from_psf(cls, psf: VectorialPSF) -> FocusMap:
        """Best focus of the simulator's PSF at depths 0, 1, ..., 35 µm."""
        depths = np.arange(0.0, 36.0, 1.0)
        stages = np.array([psf.best_focus_stage_um(float(d)) for d in depths])
        return cls(depths, stages)

    def stage_of(self, depth_um: Any) -> Any:
        """Stage position that focuses on ``depth_um``."""
        return np.interp(depth_um, self.depths_um, self.stages_um)

    def depth_of(self, stage_um: Any) -> Any:
        """Depth in focus at stage position ``stage_um``."""
        return np.interp(stage_um, self.stages_um, self.depths_um)


class SphereImages:
    """The simulator's ``sphere_profiles`` with one stage position's OTFs cached.

    ``HankelImaging.sphere_profiles`` computes the OTF of every slice depth on each
    call; here the OTFs of its common slice-depth grid are computed once per stage
    position, so that hundreds of depth hypotheses per nucleus cost little. The
    arithmetic is that of ``sphere_profiles`` (it reads the same private tables).

    Parameters
    ----------
    imaging : HankelImaging
        The simulator's imaging for the run's optics (`imaging_for`).
    stage_z_um : float
        Stage position of the frame.
    max_depth_um : float
        Deepest slice any sphere will reach.
    """

    def __init__(
        self, imaging: HankelImaging, stage_z_um: float, max_depth_um: float
    ) -> None:
        self.imaging = imaging
        self.step_um = imaging.depth_step_um
        n_depths = int(np.ceil(max_depth_um / self.step_um)) + 2
        depths = np.arange(n_depths) * self.step_um
        self.otf = imaging.otf(np.round(depths, 3), stage_z_um).astype(np.float32)

    def profiles(self, centre_depths_um: np.ndarray, radius_um: float) -> np.ndarray:
        """Radial profiles (centres, r) of uniform spheres of one radius, unit energy.

        Parameters
        ----------
        centre_depths_um : numpy.ndarray
            Depth of each sphere's centre below the coverslip.
        radius_um : float
            Sphere radius; at least the slice step (smaller spheres are points to
            ``sphere_profiles``, which this cache does not reproduce).

        Returns
        -------
        numpy.ndarray
            ``(len(centre_depths_um), len(psf.r_um))`` float64 profiles.
        """
        imaging, step = self.imaging, self.step_um
        if radius_um < step:
            raise ValueError(
                f"radius {radius_um} µm is below the slice step {step} µm (a point)"
            )
        depth_ids, rhos, weights, counts = [], [], [], []
        for centre in centre_depths_um:
            grid = np.arange(
                np.ceil((centre - radius_um) / step),
                np.floor((centre + radius_um) / step) + 1,
            )
            offsets = grid * step - centre
            rho = np.sqrt(np.maximum(radius_um**2 - offsets**2, 0.0))
            depth_ids.append(np.maximum(grid, 0).astype(int))
            rhos.append(rho)
            weights.append(rho**2 / np.sum(rho**2))
            counts.append(grid.size)
        slice_ids = np.concatenate(depth_ids)
        rho = np.concatenate(rhos)
        weight = np.concatenate(weights).astype(np.float32)
        arg = (2 * np.pi * rho)[:, None] * imaging.q[None, :]
        disc = np.interp(arg, imaging._airy_u, imaging._airy).astype(np.float32)
        contributions = (weight[:, None] * disc) * self.otf[slice_ids]
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        spectra = np.add.reduceat(contributions, starts, axis=0)
        return (spectra @ imaging._inverse.T).astype(np.float64)


def pixel_matrix(
    r_um: np.ndarray,
    centre_px: tuple[float, float],
    rows: np.ndarray,
    cols: np.ndarray,
    pixel_um: float,
    oversample: int = OVERSAMPLE,
) -> sparse.csr_matrix:
    """Linear map from a radial profile to the energy in each pixel of a patch.

    The same integration as the simulator's ``pixelate_profile`` (linear
    interpolation in r, ``oversample``² sub-pixels per pixel), as a sparse matrix, so
    that all depth hypotheses are pixelated with one product.

    Parameters
    ----------
    r_um : numpy.ndarray
        The evenly spaced radii of the profiles.
    centre_px : (float, float)
        Object centre (row, col) in frame pixel coordinates.
    rows, cols : numpy.ndarray
        Frame pixel indices of the patch's rows and columns.
    pixel_um : float
        Sample-plane pixel size.
    oversample : int
        Sub-pixels per pixel along each axis.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``(rows.size * cols.size, r_um.size)``, patch pixels in row-major order.
    """
    dr = r_um[1] - r_um[0]
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    ys = ((rows[:, None] + sub[None, :]).ravel() - centre_px[0]) * pixel_um
    xs = ((cols[:, None] + sub[None, :]).ravel() - centre_px[1]) * pixel_um
    distance = np.hypot(ys[:, None], xs[None, :])  # (rows*os, cols*os)
    position = distance / dr
    below = np.floor(position).astype(int)
    frac = position - below
    n_rows, n_cols = rows.size, cols.size
    pixel_of_sub = (np.arange(n_rows * oversample) // oversample)[:, None] * n_cols + (
        np.arange(n_cols * oversample) // oversample
    )[None, :]
    inside = below < r_um.size - 1
    area = pixel_um**2 / oversample**2
    values = np.concatenate([((1 - frac) * area)[inside], (frac * area)[inside]])
    pixel_ids = np.concatenate([pixel_of_sub[inside], pixel_of_sub[inside]])
    radius_ids = np.concatenate([below[inside], below[inside] + 1])
    return sparse.csr_matrix(
        (values, (pixel_ids, radius_ids)), shape=(n_rows * n_cols, r_um.size)
    )


def noise_variance(mean_adu: np.ndarray, camera: CameraNoiseModel) -> np.ndarray:
    """Expected variance (ADU²) of a pixel with mean ``mean_adu``.

    Shot noise of all electrons above the offset (signal and dark current), read noise
    and rounding: K·(μ − offset) + K²·σ_read² + 1/12, with K the system gain.
    Saturation (full well, bit depth) is ignored.
    """
    gain = camera.gain_adu_per_e
    shot = gain * np.maximum(mean_adu - camera.offset_adu, 0.0)
    return shot + gain**2 * camera.read_noise_e**2 + 1 / 12


def gaussian_log_likelihood(
    frame: np.ndarray, mean: np.ndarray, variance: np.ndarray, axis: int = -1
) -> np.ndarray:
    """Log-likelihood, up to a constant, of independent Gaussian pixels."""
    return -0.5 * np.sum((frame - mean) ** 2 / variance + np.log(variance), axis=axis)


def log_likelihood_known(
    frame: np.ndarray, mean: np.ndarray, camera: CameraNoiseModel
) -> np.ndarray:
    """Log-likelihood of ``frame`` (pixels,) for each hypothesis' mean (hyp, pixels)."""
    return gaussian_log_likelihood(frame, mean, noise_variance(mean, camera))


def log_likelihood_free_amplitude(
    frame: np.ndarray,
    background: np.ndarray,
    unit_images: np.ndarray,
    camera: CameraNoiseModel,
    iterations: int = AMPLITUDE_ITERATIONS,
) -> tuple[np.ndarray, np.ndarray]:
    """Profile log-likelihood over an unknown amplitude a ≥ 0.

    Model: ``frame ~ N(background + a·U, v(background + a·U))`` per hypothesis. The
    amplitude is fitted by weighted least squares, re-weighting ``iterations`` times
    with the variance of the current fit.

    Parameters
    ----------
    frame : numpy.ndarray
        ``(pixels,)`` observed values (ADU).
    background : numpy.ndarray
        ``(pixels,)`` known mean without the nucleus.
    unit_images : numpy.ndarray
        ``(hypotheses, pixels)`` the nucleus's unit-energy image U per hypothesis.
    camera : CameraNoiseModel
        Noise model.
    iterations : int
        Re-weightings.

    Returns
    -------
    log_likelihood : numpy.ndarray
        ``(hypotheses,)``.
    amplitude : numpy.ndarray
        ``(hypotheses,)`` fitted a (ADU per unit energy).
    """
    variance = np.broadcast_to(noise_variance(background, camera), unit_images.shape)
    residual = frame - background
    for _ in range(iterations):
        amplitude = np.sum(unit_images * residual / variance, axis=1) / np.maximum(
            np.sum(unit_images * unit_images / variance, axis=1), 1e-30
        )
        amplitude = np.maximum(amplitude, 0.0)
        mean = background + amplitude[:, None] * unit_images
        variance = noise_variance(mean, camera)
    return gaussian_log_likelihood(frame, mean, variance, axis=1), amplitude


def log_likelihood_free_amplitude_plane(
    frame: np.ndarray,
    unit_images: np.ndarray,
    plane_y: np.ndarray,
    plane_x: np.ndarray,
    camera: CameraNoiseModel,
    iterations: int = AMPLITUDE_ITERATIONS,
) -> tuple[np.ndarray, np.ndarray]:
    """Profile log-likelihood when the rest of the specimen is NOT known.

    Model: ``frame ~ N(a·U + b0 + b1·y + b2·x, v(mean))`` with a ≥ 0 and b free: the
    light of everything but the nucleus is an unknown plane over the patch (harsher
    than, and different from, not knowing the neighbours). Weighted least squares,
    weights first from the frame itself, then ``iterations`` times from the fit.

    Parameters
    ----------
    frame : numpy.ndarray
        ``(pixels,)`` observed values (ADU).
    unit_images : numpy.ndarray
        ``(hypotheses, pixels)`` the nucleus's unit-energy image per hypothesis.
    plane_y, plane_x : numpy.ndarray
        ``(pixels,)`` coordinates of the plane's slopes.
    camera : CameraNoiseModel
        Noise model.
    iterations : int
        Re-weightings.

    Returns
    -------
    log_likelihood : numpy.ndarray
        ``(hypotheses,)``.
    amplitude : numpy.ndarray
        ``(hypotheses,)`` fitted a.
    """
    n_hypotheses = unit_images.shape[0]
    basis = np.stack([np.ones_like(plane_y), plane_y, plane_x])  # (3, pixels)
    variance = np.broadcast_to(
        noise_variance(np.maximum(frame, 0), camera), unit_images.shape
    )
    for _ in range(iterations + 1):
        weight = 1.0 / variance
        # normal equations for [a, b0, b1, b2], one system per hypothesis
        normal = np.empty((n_hypotheses, 4, 4))
        rhs = np.empty((n_hypotheses, 4))
        normal[:, 0, 0] = np.sum(unit_images * unit_images * weight, axis=1)
        for j in range(3):
            normal[:, 0, j + 1] = normal[:, j + 1, 0] = np.sum(
                unit_images * basis[j] * weight, axis=1
            )
            for k in range(j, 3):
                normal[:, j + 1, k + 1] = normal[:, k + 1, j + 1] = np.sum(
                    basis[j] * basis[k] * weight, axis=1
                )
            rhs[:, j + 1] = np.sum(basis[j] * frame * weight, axis=1)
        rhs[:, 0] = np.sum(unit_images * frame * weight, axis=1)
        coef = np.linalg.solve(normal, rhs[..., None])[..., 0]
        negative = coef[:, 0] < 0
        if np.any(negative):  # a = 0 there: refit the plane alone
            coef[negative, 0] = 0.0
            coef[negative, 1:] = np.linalg.solve(
                normal[negative][:, 1:, 1:], rhs[negative][:, 1:, None]
            )[..., 0]
        mean = coef[:, :1] * unit_images + coef[:, 1:] @ basis
        variance = noise_variance(mean, camera)
    return gaussian_log_likelihood(frame, mean, variance, axis=1), coef[:, 0]


def refine_argmax(values: np.ndarray, grid: np.ndarray) -> float:
    """Argmax of ``values`` on an even ``grid``, refined by a parabola through 3."""
    best = int(np.argmax(values))
    if 0 < best < values.size - 1:
        left, middle, right = values[best - 1], values[best], values[best + 1]
        curvature = left - 2 * middle + right
        shift = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
        return grid[best] + np.clip(shift, -0.5, 0.5) * (grid[1] - grid[0])
    return grid[best]


@dataclass(frozen=True)
class StackSetup:
    """What every input plane of one simulated stack shares."""

    seed: int
    stack: ZStack
    clean: np.ndarray  # the stack's noise-free twin (expected ADU)
    frame_metadata: list[dict[str, Any]]
    optics: Optics
    camera: CameraNoiseModel
    specimen: Specimen
    emitters: Emitters  # the specimen's nuclei
    imaging: HankelImaging
    focus: FocusMap
    pixel_um: float
    window: tuple[slice, slice]  # the evaluate crop
    emitter_rows_px: np.ndarray  # nucleus centres in frame pixels
    emitter_cols_px: np.ndarray
    focus_csv_um: np.ndarray  # best-focus stage position of each nucleus
    depth_hypotheses_um: np.ndarray
    max_slice_depth_um: float  # deepest sphere slice any hypothesis images


@dataclass(frozen=True)
class PlaneSetup:
    """One input plane: its frames, its noise-free image and its model images."""

    stage_z_um: float
    clean: np.ndarray  # noise-free frame (ADU), float64
    frames: Frames
    base_adu: float  # offset + dark signal
    brightness_adu: np.ndarray  # ADU per unit energy of each nucleus (W)
    kernels: sparse.csr_matrix  # the simulator's unit images (pixels, emitters)
    spheres: SphereImages


def simulated_frames(
    clean: np.ndarray,
    camera: CameraNoiseModel,
    exposure_s: float,
    dark_adu: float,
    levels: Sequence[float],
    seed: int,
    plane: int,
) -> Frames:
    """Frames at each light level: the signal above offset + dark scaled, then noised.

    Each frame's noise seed is ``[seed, plane, index of the level, NOISE_SEED_TAG]``.
    """
    signal_adu = clean - camera.offset_adu - dark_adu
    photons = np.maximum(signal_adu, 0) / (
        camera.gain_adu_per_e * camera.quantum_efficiency
    )
    frames: Frames = {}
    for index, scale in enumerate(levels):
        rng = np.random.default_rng([seed, plane, index, NOISE_SEED_TAG])
        frame = camera.expose(photons * scale, exposure_s, rng).astype(np.float64)
        frames[f"sim{scale:g}"] = (scale, frame)
    return frames


def match_emitter(
    setup: StackSetup, peak_z_um: float, row_px: float, col_px: float
) -> tuple[int, float] | None:
    """The simulated nucleus behind an evaluate object, and their lateral distance.

    Among nuclei within ``MATCH_PX``, the one whose best focus is nearest the
    object's scan peak (lateral distance breaks near ties). None when none is near.
    """
    distance = np.hypot(setup.emitter_rows_px - row_px, setup.emitter_cols_px - col_px)
    candidates = np.flatnonzero(distance <= MATCH_PX)
    if candidates.size == 0:
        return None
    cost = (
        np.abs(setup.focus_csv_um[candidates] - peak_z_um) + 0.1 * distance[candidates]
    )
    emitter = int(candidates[np.argmin(cost)])
    return emitter, float(distance[emitter])


def score_object(
    setup: StackSetup,
    plane: PlaneSetup,
    emitter: int,
    evaluate_peak: tuple[float, float, float],
    match_distance_px: float,
) -> Row:
    """One rows.csv row: every observer's depth estimate in every frame of a plane.

    Parameters
    ----------
    setup, plane : StackSetup, PlaneSetup
        The stack and the input plane.
    emitter : int
        Index of the simulated nucleus.
    evaluate_peak : (float, float, float)
        The evaluate object's scan-peak z (µm) and its frame pixel (row, col).
    match_distance_px : float
        Lateral distance between the object and the nucleus.

    Returns
    -------
    dict
        Truth, consistency checks, and per frame and observer the estimated
        best-focus stage position (``_pred``), its error against the truth
        (``_err``), and log-likelihood differences true − mirror (the depth on the
        other side of the input plane) and best − true.
    """
    emitters = setup.emitters
    camera = setup.camera
    stage_z = plane.stage_z_um
    window_y, window_x = setup.window
    depth_true = float(emitters.depth_um[emitter])
    radius_true = float(emitters.radius_um[emitter])
    focus_true = float(setup.focus_csv_um[emitter])
    depth_mirror = float(setup.focus.depth_of(2 * stage_z - focus_true))
    # patch around the nucleus centre, inside the crop window
    centre_row, centre_col = (
        setup.emitter_rows_px[emitter],
        setup.emitter_cols_px[emitter],
    )
    nearest_row = int(np.floor(centre_row + 0.5))
    nearest_col = int(np.floor(centre_col + 0.5))
    row0 = max(window_y.start, nearest_row - PATCH_HALF_PX)
    row1 = min(window_y.stop, nearest_row + PATCH_HALF_PX + 1)
    col0 = max(window_x.start, nearest_col - PATCH_HALF_PX)
    col1 = min(window_x.stop, nearest_col + PATCH_HALF_PX + 1)
    patch = np.s_[row0:row1, col0:col1]
    patch_rows, patch_cols = np.arange(row0, row1), np.arange(col0, col1)
    to_pixels = pixel_matrix(
        setup.imaging.psf.r_um,
        (centre_row, centre_col),
        patch_rows,
        patch_cols,
        setup.pixel_um,
    )
    plane_y = np.repeat((patch_rows - centre_row) / PATCH_HALF_PX, patch_cols.size)
    plane_x = np.tile((patch_cols - centre_col) / PATCH_HALF_PX, patch_rows.size)
    # hypotheses, then the true depth and its mirror image about the input plane
    hypotheses = setup.depth_hypotheses_um
    n_hypotheses = hypotheses.size
    depths = np.concatenate([hypotheses, np.array([depth_true, depth_mirror])])

    def unit_images(radius_um: float) -> np.ndarray:
        profiles = plane.spheres.profiles(depths, radius_um)
        return np.asarray((to_pixels @ profiles.T).T)  # (depths, pixels)

    images_true_radius = unit_images(radius_true)
    image_true = images_true_radius[-2]
    # consistency with the simulator's own kernel of this nucleus
    kernel = plane.kernels[:, emitter].toarray().reshape(setup.stack.data.shape[1:])
    kernel = kernel[patch].ravel()
    kernel_error = float(
        np.linalg.norm(image_true - kernel) / max(np.linalg.norm(kernel), 1e-30)
    )
    brightness = float(plane.brightness_adu[emitter])
    clean = plane.clean[patch].ravel()
    without_nucleus = clean - brightness * image_true
    images_by_radius = {radius: unit_images(radius) for radius in RADII}
    gain = camera.gain_adu_per_e
    row: Row = {
        "seed": setup.seed,
        "input_z": stage_z,
        "obj_y": evaluate_peak[1],
        "obj_x": evaluate_peak[2],
        "eval_z_true": float(evaluate_peak[0]),
        "emitter": emitter,
        "lat_match_px": match_distance_px,
        "depth_true": depth_true,
        "radius_true": radius_true,
        "focus_true": focus_true,
        "dz_true": focus_true - stage_z,
        "W_adu": brightness,
        "n_pix": int(clean.size),
        "kernel_rel_err": kernel_error,
        "photons_in_frame": brightness / (gain * camera.quantum_efficiency),
    }
    for name, (scale, full_frame) in plane.frames.items():
        frame = full_frame[patch].ravel()
        base = plane.base_adu
        background = base + scale * (without_nucleus - base)
        # known: everything but the depth
        mean = background[None, :] + (scale * brightness) * images_true_radius
        ll_known = log_likelihood_known(frame, mean, camera)
        # amp: brightness free, radius known
        ll_amp, amplitude = log_likelihood_free_amplitude(
            frame, background, images_true_radius, camera
        )
        # ampr: brightness free, radius the best of the grid
        ll_amp_radius = np.array(
            [
                log_likelihood_free_amplitude(
                    frame, background, images_by_radius[radius], camera
                )[0]
                for radius in RADII
            ]
        ).max(axis=0)
        observers = [("known", ll_known), ("amp", ll_amp), ("ampr", ll_amp_radius)]
        if name == RECORDED:  # the slowest observer: the recorded frame only
            ll_plane, _ = log_likelihood_free_amplitude_plane(
                frame, images_true_radius, plane_y, plane_x, camera
            )
            observers.append(("ampbg", ll_plane))
        for observer, ll in observers:
            depth_hat = refine_argmax(ll[:n_hypotheses], hypotheses)
            predicted = float(setup.focus.stage_of(depth_hat))
            true_ll, mirror_ll = ll[n_hypotheses], ll[n_hypotheses + 1]
            prefix = f"{name}_{observer}"
            row[f"{prefix}_pred"] = predicted
            row[f"{prefix}_err"] = predicted - focus_true
            row[f"{prefix}_dll_true_minus_mirror"] = float(true_ll - mirror_ll)
            row[f"{prefix}_dll_best_minus_true"] = float(
                ll[:n_hypotheses].max() - true_ll
            )
        best_amplitude = amplitude[int(np.argmax(ll_amp[:n_hypotheses]))]
        row[f"{name}_amp_ratio"] = float(best_amplitude / (scale * brightness))
    return row


def prepare_stack(data: Path, seed: int) -> StackSetup:
    """Read one simulated worm, its truth table and the simulator that made it.

    Raises
    ------
    ValueError
        When the recorded settings do not reproduce the stack's pixel size or its
        objects table.
    """
    path = data / f"worm-{seed}.ome.tif"
    stack = read_stacks(path)[0]
    frame_metadata = read_frame_metadata(path)
    optics, camera, specimen_props = optics_and_camera(read_run_metadata(path))
    specimen = make_specimen(
        specimen_props["Kind"],
        int(specimen_props["Seed"]),
        float(specimen_props["Depth"]),
    )
    emitters = specimen.emitters
    if emitters is None or stack.clean is None:
        raise ValueError(f"{path}: needs nuclei and the noise-free twin")
    imaging = imaging_for(optics)
    pixel_um = optics.sample_pixel_um
    if abs(pixel_um - stack.pixel_um[1]) >= 1e-9:
        raise ValueError(f"{path}: pixel {stack.pixel_um[1]} µm, optics {pixel_um}")
    focus = FocusMap.from_psf(imaging.psf)
    table = np.genfromtxt(
        str(path).replace(".ome.tif", ".objects.csv"), delimiter=",", names=True
    )
    if not (
        np.allclose(table["x_um"], emitters.x_um, atol=1e-3)
        and np.allclose(table["depth_um"], emitters.depth_um, atol=1e-3)
    ):
        raise ValueError(f"{path}: the objects table is not this specimen's")
    n_rows, n_cols = stack.data.shape[1:]
    z_um = stack.z_um
    # depth hypotheses: those in focus somewhere in the stack's z range
    depth_lo = max(MIN_DEPTH_UM, float(focus.depth_of(z_um[0])))
    depth_hi = float(focus.depth_of(z_um[-1]))
    return StackSetup(
        seed=seed,
        stack=stack,
        clean=stack.clean,
        frame_metadata=frame_metadata,
        optics=optics,
        camera=camera,
        specimen=specimen,
        emitters=emitters,
        imaging=imaging,
        focus=focus,
        pixel_um=pixel_um,
        window=centre_crop_window(stack, CROP),
        emitter_rows_px=emitters.y_um / pixel_um + (n_rows - 1) / 2,
        emitter_cols_px=emitters.x_um / pixel_um + (n_cols - 1) / 2,
        focus_csv_um=table["focus_z_um"],
        depth_hypotheses_um=np.arange(depth_lo, depth_hi + 1e-9, DEPTH_STEP_UM),
        max_slice_depth_um=max(depth_hi, emitters.depth_um.max()) + 2.0,
    )


def run_stack(
    seed: int,
    *,
    data: Path = DATA,
    levels: Sequence[float] = LEVELS,
    score_recorded: bool = True,
    limit: int | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, Any], list[Row]]:
    """Score every evaluate object near each input plane of one simulated worm.

    Parameters
    ----------
    seed : int
        The worm (``worm-{seed}.ome.tif`` in ``data``).
    data : pathlib.Path
        Folder of the fresh simulated stacks.
    levels : sequence of float
        Light levels of the simulated frames (1 = the recorded exposure).
    score_recorded : bool
        Score the recorded frame as well.
    limit : int or None
        At most this many objects per input plane (for timing).
    log : callable
        Receives one progress line per plane.

    Returns
    -------
    info : dict
        Per-stack facts for meta.json (inputs, object counts, checks).
    rows : list of dict
        One row per object and input plane (`score_object`).
    """
    setup = prepare_stack(data, seed)
    stack, camera, specimen = setup.stack, setup.camera, setup.specimen
    emitters = setup.emitters
    z_um = stack.z_um
    shape = stack.data.shape[1:]
    window_y, window_x = setup.window
    offset = camera.offset_adu
    gain = camera.gain_adu_per_e
    objects = find_objects(
        setup.clean[:, window_y, window_x] - np.float32(offset), z_um, smooth=False
    )
    objects = objects[isolated(objects, ISOLATION_UM / setup.pixel_um)]
    inputs = choose_input_planes(z_um, DZ_RANGE_UM, INPUTS_PER_STACK)
    focus_from_psf = setup.focus.stage_of(emitters.depth_um)
    info: dict[str, Any] = {
        "seed": seed,
        "inputs": [float(z_um[i]) for i in inputs],
        "n_objects_isolated": len(objects),
        "focus_map_max_diff_vs_csv_um": float(
            np.max(np.abs(setup.focus_csv_um - focus_from_psf))
        ),
        "unmatched": 0,
        "window": [window_y.start, window_x.start],
    }
    renderer = Renderer(setup.optics, specimen)
    rows: list[Row] = []
    for plane_index in inputs:
        meta = setup.frame_metadata[plane_index]
        if abs(meta["z_um"] - z_um[plane_index]) >= 1e-6:
            raise ValueError(f"stack {seed}: frame metadata out of step with z")
        stage_z = float(z_um[plane_index])
        exposure_s = meta["exposure_ms"] / 1000
        dark_adu = gain * camera.dark_current_e_per_s * exposure_s
        photons_per_fluorophore = photon_scale(
            setup.optics, meta["irradiance_W_cm2"], exposure_s
        )
        # brightness of every nucleus as the clean twin rendered it
        activity = specimen.brightness_factor(meta["time_s"])
        brightness_adu = (
            emitters.fluorophores
            * meta["bleach_factor"]
            * (activity if activity is not None else 1.0)
            * photons_per_fluorophore
            * camera.quantum_efficiency
            * gain
        )
        clean = setup.clean[plane_index].astype(np.float64)
        frames = simulated_frames(
            clean, camera, exposure_s, dark_adu, levels, seed, plane_index
        )
        if score_recorded:
            frames[RECORDED] = (1.0, stack.data[plane_index].astype(np.float64))
        plane = PlaneSetup(
            stage_z_um=stage_z,
            clean=clean,
            frames=frames,
            base_adu=offset + dark_adu,
            brightness_adu=brightness_adu,
            kernels=renderer.emitter_images(stage_z, shape, setup.pixel_um),
            spheres=SphereImages(setup.imaging, stage_z, setup.max_slice_depth_um),
        )
        near = np.flatnonzero(np.abs(objects[:, 0] - stage_z) <= AXIAL_RANGE_UM + 1e-6)
        if limit is not None:
            near = near[:limit]
        t_plane = time.time()
        for peak_z, crop_row, crop_col in objects[near]:
            peak = (peak_z, crop_row + window_y.start, crop_col + window_x.start)
            match = match_emitter(setup, peak_z, peak[1], peak[2])
            if match is None:
                info["unmatched"] += 1
                continue
            rows.append(score_object(setup, plane, match[0], peak, match[1]))
        log(
            f"stack {seed} plane z={stage_z:.3f}: {near.size} objects, "
            f"{time.time() - t_plane:.1f} s"
        )
    return info, rows


def write_rows(path: Path, rows: list[Row]) -> None:
    """Write rows as CSV, columns in the first row's order."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    """Command line: measure the given stacks and write OUT/rows.csv, OUT/meta.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", type=int, nargs="*", default=list(STACKS))
    parser.add_argument(
        "--limit", type=int, default=None, help="objects per input plane (timing)"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--data", type=Path, default=DATA, help="fresh worm stacks")
    parser.add_argument("--levels", type=float, nargs="*", default=list(LEVELS))
    parser.add_argument(
        "--no-real", action="store_true", help="skip the recorded frame"
    )
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - t0:7.1f} s] {message}", flush=True)

    log(f"deepz_live from {deepz_live.__file__}")
    rows: list[Row] = []
    infos = []
    for seed in args.stacks:
        info, stack_rows = run_stack(
            seed,
            data=args.data,
            levels=tuple(args.levels),
            score_recorded=not args.no_real,
            limit=args.limit,
            log=log,
        )
        infos.append(info)
        rows += stack_rows
        if rows:  # after every stack, so that a long run leaves partial results
            write_rows(out / "rows.csv", rows)
    meta = {
        "stacks": infos,
        "levels": args.levels,
        "real": not args.no_real,
        "depth_step_um": DEPTH_STEP_UM,
        "patch_half_px": PATCH_HALF_PX,
        "radii": RADII,
        "seconds": time.time() - t0,
        "deepz_live": deepz_live.__file__,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    log(f"done: {len(rows)} rows")


if __name__ == "__main__":
    main()
