"""Noise-free widefield images of a `Specimen` at a stage position.

Two paths, both exact for what they image:

* **Emitters** (beads, nuclei): each object's radial image comes from
  `HankelImaging` (sphere ⊛ depth-dependent PSF) and is integrated over the square
  camera pixels with oversampling. The per-object kernels for one stage position form a
  sparse matrix, so a time-lapse at a fixed focus costs one sparse product per frame.
* **Sheets**: the layer is cut into depth slices; each slice's spectrum (computed once)
  is multiplied by that depth's OTF and the pixel's sinc, and summed before one
  inverse FFT. The sheet texture is band-limited below the camera's Nyquist
  frequency, so sampling on the camera grid loses nothing.

Images are in *fluorophore-equivalents per pixel*: multiply by the photons each
fluorophore sends into the objective during the exposure (see `photon_scale`).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from scipy import fft, sparse

from ._optics import (
    HankelImaging,
    Optics,
    VectorialPSF,
    encircled_radius,
    pixelate_profile,
)
from ._specimens import EMISSION_RATE_PER_W_CM2

if TYPE_CHECKING:
    from ._specimens import Emitters, Sheet, Specimen

#: energy fraction each emitter kernel keeps (the rest is far-out ring light)
KERNEL_ENERGY = 0.995
SHEET_SLICE_UM = 0.25
#: objects whose light spreads wider than this are integrated with 2x2 sub-pixels
BLURRED_REACH_UM = 4.0


@lru_cache(maxsize=4)
def imaging_for(optics: Optics) -> HankelImaging:
    """The (expensive to build) PSF and Hankel machinery for one set of optics."""
    return HankelImaging(VectorialPSF(optics))


def photon_scale(optics: Optics, irradiance_w_cm2: float, exposure_s: float) -> float:
    """Photons one fluorophore sends into the objective during one exposure."""
    return (
        EMISSION_RATE_PER_W_CM2
        * irradiance_w_cm2
        * exposure_s
        * optics.collection_efficiency
    )


def pixel_centres_um(
    n_rows: int, n_cols: int, pixel_um: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sample-plane coordinates (y, x) of pixel centres; the optical axis is central."""
    ys = (np.arange(n_rows) - (n_rows - 1) / 2) * pixel_um
    xs = (np.arange(n_cols) - (n_cols - 1) / 2) * pixel_um
    return ys, xs


class Renderer:
    """Renders one specimen through one set of optics, caching per stage position."""

    def __init__(
        self, optics: Optics, specimen: Specimen, *, oversample: int = 3
    ) -> None:
        self.optics = optics
        self.specimen = specimen
        self.oversample = oversample
        self.imaging = imaging_for(optics)
        self._emitter_cache: OrderedDict[tuple, sparse.csr_matrix] = OrderedDict()
        self._sheet_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._sheet_slices: dict[tuple, tuple[np.ndarray, np.ndarray, tuple]] = {}

    # -- public --------------------------------------------------------------------
    def render(
        self,
        stage_z_um: float,
        shape: tuple[int, int],
        pixel_um: float,
        *,
        t_s: float = 0.0,
        bleach_factor: float = 1.0,
    ) -> np.ndarray:
        """Fluorophore-equivalents per pixel of a full frame, float64 (rows, cols)."""
        image = np.zeros(shape)
        spec = self.specimen
        if spec.emitters is not None and len(spec.emitters):
            weights = spec.emitters.fluorophores * bleach_factor
            factor = spec.brightness_factor(t_s)
            if factor is not None:
                weights = weights * factor
            kernels = self._emitter_kernels(stage_z_um, shape, pixel_um)
            image += (kernels @ weights).reshape(shape)
        if spec.sheet is not None:
            image += bleach_factor * self._sheet_image(stage_z_um, shape, pixel_um)
        return image

    def emitter_images(
        self, stage_z_um: float, shape: tuple[int, int], pixel_um: float
    ) -> sparse.csr_matrix:
        """Per-emitter unit images as a sparse (pixels, emitters) matrix."""
        return self._emitter_kernels(stage_z_um, shape, pixel_um)

    # -- emitters ------------------------------------------------------------------
    def _emitter_kernels(
        self, stage_z_um: float, shape: tuple[int, int], pixel_um: float
    ) -> sparse.csr_matrix:
        key = (round(stage_z_um, 4), shape, round(pixel_um, 6))
        if key in self._emitter_cache:
            self._emitter_cache.move_to_end(key)
            return self._emitter_cache[key]
        em: Emitters = self.specimen.emitters  # type: ignore[assignment]
        profiles = self.imaging.sphere_profiles(em.depth_um, em.radius_um, stage_z_um)
        r_um = self.imaging.psf.r_um
        reach = encircled_radius(r_um, profiles, KERNEL_ENERGY)
        ys, xs = pixel_centres_um(shape[0], shape[1], 1.0)
        rows_all, cols_all, vals_all = [], [], []
        for i in range(len(em)):
            centre = (
                em.y_um[i] / pixel_um - ys[0],
                em.x_um[i] / pixel_um - xs[0],
            )
            half = int(np.ceil(reach[i] / pixel_um)) + 1
            if (
                centre[0] + half < -1
                or centre[1] + half < -1
                or centre[0] - half > shape[0]
                or centre[1] - half > shape[1]
            ):
                continue  # entirely outside the frame
            # defocused light is smooth on the pixel scale: 2x2 sub-samples integrate
            # it as well as 3x3 do, at less than half the cost
            oversample = self.oversample if reach[i] < BLURRED_REACH_UM else 2
            kernel, (r0, c0) = pixelate_profile(
                r_um,
                profiles[i],
                centre,
                half,
                pixel_um,
                min(oversample, self.oversample),
            )
            rr, cc = np.nonzero(kernel > 0)
            rr_img, cc_img = rr + r0, cc + c0
            keep = (
                (rr_img >= 0)
                & (rr_img < shape[0])
                & (cc_img >= 0)
                & (cc_img < shape[1])
            )
            rows_all.append(rr_img[keep] * shape[1] + cc_img[keep])
            cols_all.append(np.full(int(keep.sum()), i))
            vals_all.append(kernel[rr[keep], cc[keep]])
        n_pix = shape[0] * shape[1]
        if rows_all:
            matrix = sparse.csr_matrix(
                (
                    np.concatenate(vals_all),
                    (np.concatenate(rows_all), np.concatenate(cols_all)),
                ),
                shape=(n_pix, len(em)),
            )
        else:
            matrix = sparse.csr_matrix((n_pix, len(em)))
        self._emitter_cache[key] = matrix
        while len(self._emitter_cache) > 8:
            self._emitter_cache.popitem(last=False)
        return matrix

    # -- sheets --------------------------------------------------------------------
    def _sheet_image(
        self, stage_z_um: float, shape: tuple[int, int], pixel_um: float
    ) -> np.ndarray:
        key = (round(stage_z_um, 4), shape, round(pixel_um, 6))
        if key in self._sheet_cache:
            return self._sheet_cache[key]
        spectra, depths, (n_pad_r, n_pad_c, margin) = self._sheet_spectra(
            shape, pixel_um
        )
        fy = fft.fftfreq(n_pad_r, d=pixel_um)
        fx = fft.rfftfreq(n_pad_c, d=pixel_um)
        f_radial = np.hypot(fy[:, None], fx[None, :])
        pixel_mtf = np.sinc(fy * pixel_um)[:, None] * np.sinc(fx * pixel_um)[None, :]
        otfs = self.imaging.otf(depths, stage_z_um)  # (slices, q)
        total = np.zeros_like(spectra[0])
        for spectrum, otf in zip(spectra, otfs, strict=True):
            total += spectrum * np.interp(f_radial, self.imaging.q, otf, right=0.0)
        image = fft.irfft2(total * pixel_mtf, s=(n_pad_r, n_pad_c))
        image = image[margin : margin + shape[0], margin : margin + shape[1]]
        image = np.maximum(image, 0.0)
        self._sheet_cache[key] = image
        while len(self._sheet_cache) > 8:
            self._sheet_cache.popitem(last=False)
        return image

    def _sheet_spectra(
        self, shape: tuple[int, int], pixel_um: float
    ) -> tuple[np.ndarray, np.ndarray, tuple]:
        key = (shape, round(pixel_um, 6))
        if key in self._sheet_slices:
            return self._sheet_slices[key]
        sheet: Sheet = self.specimen.sheet  # type: ignore[assignment]
        # margin wide enough for the widest blur (defocus up to ~30 µm)
        margin = int(np.ceil(22.0 / pixel_um))
        n_r = fft.next_fast_len(shape[0] + 2 * margin, real=True)
        n_c = fft.next_fast_len(shape[1] + 2 * margin, real=True)
        ys = (np.arange(n_r) - margin - (shape[0] - 1) / 2) * pixel_um
        xs = (np.arange(n_c) - margin - (shape[1] - 1) / 2) * pixel_um
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        depth = sheet.depth_at(xx, yy)
        amount = sheet.texture_at(xx, yy) * pixel_um**2 * sheet.thickness_um
        # split each pixel's fluorophores between the two nearest depth slices
        step = SHEET_SLICE_UM
        pos = depth / step
        lo = np.floor(pos).astype(int)
        frac = pos - lo
        slice_ids = np.arange(lo.min(), lo.max() + 2)
        spectra = []
        for sid in slice_ids:
            layer = amount * ((lo == sid) * (1 - frac) + (lo + 1 == sid) * frac)
            spectra.append(fft.rfft2(layer).astype(np.complex64))
        result = (
            np.array(spectra),
            np.maximum(slice_ids * step, 0.0),
            (n_r, n_c, margin),
        )
        self._sheet_slices[key] = result
        return result
