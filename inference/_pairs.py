"""Deep-Z training pairs from measured z-stacks.

A pair is ``(input plane crop, DPM, target)``: the network sees one recorded plane
and a digital propagation matrix (per-pixel refocusing distance, µm) and must
produce the image at ``z_input + DPM``. Constant DPMs teach refocusing to flat
planes; tilted and curved DPMs teach refocusing to surfaces (Wu et al. 2019). The
target at an arbitrary z is interpolated linearly between the two recorded planes
that bracket it, pixel by pixel (`target_for_dpm`); this is exact at recorded
planes and a good approximation when the z step is finer than the depth of field.

Validation must never see training pixels, or it measures memory rather than
refocusing: `PairSampler` splits either whole stacks (``split_by="stack"``) or a
band of every field of view (``split_by="region"``).

Cross-modality Deep-Z (Wu et al. 2019: widefield in, confocal out) takes the target
from a second, registered stack of the same sample (``target_stacks``); the other
detector's dark level and brightness are handled by `TargetNormalization`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from deepz_live.inference._normalize import Normalization

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from numpy.typing import ArrayLike

    from deepz_live.inference._stacks import ZStack

__all__ = [
    "PairConfig",
    "PairSampler",
    "SplitRegion",
    "TargetNormalization",
    "ValidationPair",
    "target_for_dpm",
]

# Positions within this many µm outside the stack count as inside: they come from
# float rounding of z_input + dz, not from a DPM that really leaves the stack.
_Z_TOLERANCE_UM = 1e-6

# Pixel sizes of stacks used to train one model may differ by this much (relative).
_PIXEL_TOLERANCE = 0.01


@dataclass(frozen=True)
class PairConfig:
    """How training pairs are drawn.

    Parameters
    ----------
    dz_range_um : float
        Largest refocusing distance: every DPM value lies in ``[-range, +range]``.
        The DPM is fed to the network divided by this, so it is part of a model.
    crop : int
        Side of the square crops, in pixels.
    surface_fraction : float
        Share of samples with a non-uniform (tilted or curved) DPM.
    max_tilt_um : float
        Largest change of a tilted-plane DPM across the crop (peak to peak).
    max_curvature_um : float
        Largest sag of a paraboloid DPM over the crop (peak to peak).
    flips : bool
        Augment with mirror images.
    rotations : bool
        Augment with 90° rotations.
    clean_targets : bool
        Take targets from a stack's noise-free twin where it has one (simulator
        ground truth, `ZStack.clean`); inputs stay the recorded, noisy planes. A
        noisy target teaches the network to reproduce the input's own noise at
        small distances and scores a smooth guess best everywhere else.

    Raises
    ------
    ValueError
        Non-positive range or crop, a fraction outside [0, 1], negative maxima.
    """

    dz_range_um: float = 10.0
    crop: int = 128
    surface_fraction: float = 0.3
    max_tilt_um: float = 4.0
    max_curvature_um: float = 3.0
    flips: bool = True
    rotations: bool = True
    clean_targets: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.dz_range_um) and self.dz_range_um > 0):
            raise ValueError(f"dz_range_um must be positive, got {self.dz_range_um}")
        if int(self.crop) != self.crop or self.crop < 1:
            raise ValueError(f"crop must be a positive integer, got {self.crop}")
        if not 0 <= self.surface_fraction <= 1:
            raise ValueError(
                f"surface_fraction must be in [0, 1], got {self.surface_fraction}"
            )
        for name in ("max_tilt_um", "max_curvature_um"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be >= 0, got {value}")
        object.__setattr__(self, "crop", int(self.crop))


@dataclass(frozen=True)
class TargetNormalization:
    """How targets from another detector (cross-modality) are normalized.

    A target crop is normalized as ``(target - offset) / (input_scale × ratio)``:
    ``offset`` is the *target* detector's dark level (a confocal PMT's is not the
    widefield camera's) and ``input_scale`` the input crop's robust scale, exactly
    as for single-modality pairs, so the output stays relative to the frame the
    network sees. ``ratio`` depends on ``mode``:

    ``"input"`` (the default)
        ``ratio = 1``: the target in the input's units. The network also learns
        the brightness ratio of the two instruments (a constant for one setup).
    ``"stack"``
        ``ratio = S_target / S_input``, the robust scales (``percentile`` above the
        offset) of the target and input stacks, fitted once per stack pair on the
        pixels the sampler (or evaluation) uses: the target gets the input's
        brightness and the network would only learn the change of contrast.

    Measured on the NEUBIAS widefield/confocal nucleus (registered; train on the
    left half, validate on the right; crop 64, ±8 µm, 4 epochs × 60 steps, no GAN,
    seed 0), validation PSNR of the model, mean over the |dz| = 0–4 µm bins:
    ``"input"`` 17.0 dB, ``"stack"`` 11.6 dB (all bins 0–8 µm: 11.7 vs 0.4 dB;
    SSIM 0.44 vs 0.30). ``"stack"`` wins only in focus (20.6 vs 16.7 dB at 0 µm):
    with the target as dim as the input, the widefield haze the network passes
    through from its input dominates the error on the nearly dark confocal planes
    away from the nucleus, whereas a target ~6× brighter than the input (this
    setup's ratio) makes that leak 6× smaller relative to the signal. Hence
    ``"input"``. PSNR compares the two fairly: both normalizations differ only by
    one constant per stack, which PSNR (range of the target) does not see.

    Parameters
    ----------
    normalization : Normalization
        Offset (target dark level), percentile and floor used for target scales.
    mode : {"stack", "input"}
        See above.

    Raises
    ------
    ValueError
        An unknown mode.
    """

    normalization: Normalization
    mode: Literal["stack", "input"] = "input"

    def __post_init__(self) -> None:
        if self.mode not in ("stack", "input"):
            raise ValueError(f"mode must be 'stack' or 'input', got {self.mode!r}")

    def brightness_ratio(
        self,
        input_data: np.ndarray,
        target_data: np.ndarray,
        input_normalization: Normalization,
    ) -> float:
        """``S_target / S_input``: robust target/input brightness of a stack pair.

        Parameters
        ----------
        input_data, target_data : numpy.ndarray
            The raw voxels of the input and target stacks (same region of both).
        input_normalization : Normalization
            The input's normalization (its offset and percentile).
        """
        return self.normalization.scale_of(target_data) / input_normalization.scale_of(
            input_data
        )

    def ratio(self, brightness_ratio: float) -> float:
        """The ``ratio`` of the class formula, given a pair's `brightness_ratio`."""
        return brightness_ratio if self.mode == "stack" else 1.0

    def apply(self, target: ArrayLike, input_scale: float, ratio: float) -> np.ndarray:
        """Normalize a raw target crop given its input crop's scale and the ratio."""
        return self.normalization.apply(target, input_scale * ratio)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form, for model files and checkpoints."""
        return {**self.normalization.to_dict(), "mode": self.mode}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TargetNormalization:
        """Rebuild from `to_dict` output.

        Raises
        ------
        ValueError
            Not a mapping, an unknown mode, or a bad normalization entry.
        """
        if not hasattr(d, "keys"):
            raise ValueError(
                f"target_normalization must be a mapping, got {type(d).__name__}"
            )
        values = dict(d)
        mode = values.pop("mode", "input")
        return cls(Normalization.from_dict(values), mode)

    @classmethod
    def fit(
        cls, target_stacks: Sequence[ZStack], mode: Literal["stack", "input"] = "input"
    ) -> TargetNormalization:
        """The target detector's offset from its stacks (see `Normalization.fit`)."""
        return cls(Normalization.fit(target_stacks), mode)


class SplitRegion(NamedTuple):
    """The part of one stack's field a sampler draws crops from (half-open)."""

    stack_index: int
    y_start: int
    y_stop: int
    x_start: int
    x_stop: int


@dataclass(frozen=True, eq=False)
class ValidationPair:
    """One deterministic evaluation pair with a constant DPM, and where it came from.

    Attributes
    ----------
    input, dpm_um, target : numpy.ndarray
        ``(crop, crop)`` float32; input and target normalized with the input's scale
        (a cross-modal target: see `TargetNormalization`).
    dz_um : float
        The constant refocusing distance.
    source : str
        `ZStack.source` of the stack.
    plane_index : int
        Index of the input plane in that stack.
    y0, x0 : int
        Top-left corner of the crop in the stack's field.
    """

    input: np.ndarray
    dpm_um: np.ndarray
    target: np.ndarray
    dz_um: float
    source: str
    plane_index: int
    y0: int
    x0: int


def target_for_dpm(
    stack: ZStack,
    plane_index: int,
    dpm_um: ArrayLike,
    y0: int,
    x0: int,
    *,
    clean: bool = False,
) -> np.ndarray:
    """The image at ``z_um[plane_index] + dpm`` over a crop, interpolated in z.

    Each pixel is interpolated linearly between the two recorded planes that
    bracket its own z, at that pixel.

    Parameters
    ----------
    stack : ZStack
        Source stack.
    plane_index : int
        Input plane; the DPM is relative to its z.
    dpm_um : array_like
        ``(h, w)`` refocusing distance per pixel, µm.
    y0, x0 : int
        Top-left corner of the crop in the stack's field.
    clean : bool
        Interpolate the stack's noise-free twin instead (where it has one).

    Returns
    -------
    numpy.ndarray
        ``(h, w)`` float32 target in the stack's intensity units.

    Raises
    ------
    ValueError
        The crop leaves the field, the plane index is out of range, or some
        ``z_um[plane_index] + dpm`` lies outside the stack's z range.
    """
    dpm = np.asarray(dpm_um, dtype=np.float64)
    if dpm.ndim != 2:
        raise ValueError(f"dpm_um must be 2-D (h, w), got shape {dpm.shape}")
    n_z, height, width = stack.shape
    h, w = dpm.shape
    if not 0 <= plane_index < n_z:
        raise ValueError(f"plane_index {plane_index} outside 0..{n_z - 1}")
    if y0 < 0 or x0 < 0 or y0 + h > height or x0 + w > width:
        raise ValueError(
            f"crop {h}×{w} at (y0={y0}, x0={x0}) leaves the {height}×{width} field "
            f"of {stack.source}"
        )
    z_planes = stack.z_um
    z = z_planes[plane_index] + dpm
    low, high = z_planes[0], z_planes[-1]
    if not np.all(np.isfinite(z)) or (
        z.min() < low - _Z_TOLERANCE_UM or z.max() > high + _Z_TOLERANCE_UM
    ):
        raise ValueError(
            f"the DPM reaches z = {np.nanmin(z):.4g}..{np.nanmax(z):.4g} µm, outside "
            f"the {low:.4g}..{high:.4g} µm recorded in {stack.source}"
        )
    z = np.clip(z, low, high)
    below = np.clip(np.searchsorted(z_planes, z, side="right") - 1, 0, n_z - 2)
    weight = (z - z_planes[below]) / (z_planes[below + 1] - z_planes[below])
    rows = np.arange(y0, y0 + h)[:, np.newaxis]
    cols = np.arange(x0, x0 + w)[np.newaxis, :]
    data = _target_data(stack, clean)
    lower = data[below, rows, cols]
    upper = data[below + 1, rows, cols]
    return ((1.0 - weight) * lower + weight * upper).astype(np.float32)


def _target_data(stack: ZStack, clean: bool) -> np.ndarray:
    """The planes targets come from: the noise-free twin if asked and present."""
    return stack.clean if clean and stack.clean is not None else stack.data


class PairSampler:
    """Draw Deep-Z training pairs from z-stacks, for one side of a train/val split.

    Parameters
    ----------
    stacks : sequence of ZStack
        Training stacks of one microscope (one pixel size).
    config : PairConfig
        Range of DPMs, crop size, surface share, augmentations.
    normalization : Normalization
        Applied to input and target with the input crop's scale.
    split : {"train", "val"}
        Which side of the split this sampler draws from.
    val_fraction : float
        Share held out for validation: of the stacks (``"stack"``) or of each
        field's width (``"region"``).
    split_by : {"stack", "region"}
        ``"stack"`` holds out whole stacks (needs at least 2; which ones depends on
        ``seed`` only). ``"region"`` holds out the right ``val_fraction`` of every
        field's x range; training crops never overlap it.
    seed : int
        Seed of the stack split and of `validation_pairs`.
    target_stacks : sequence of ZStack, optional
        Cross-modality training: one registered stack per input stack, of the same
        shape and plane positions, recorded with another detector (e.g. confocal
        for widefield inputs). The input is still a plane of ``stacks[k]``, the
        target is interpolated by `target_for_dpm` from ``target_stacks[k]``.
        Everything else (DPMs, augmentations, splits) is unchanged.
    target_normalization : TargetNormalization, optional
        How those targets are normalized; default `TargetNormalization.fit` of
        the target stacks (mode ``"input"``).

    Raises
    ------
    ValueError
        No stacks, stacks of different pixel sizes, a bad split setting, a crop
        larger than a stack's region, too few stacks for a stack split, or target
        stacks that do not match the stacks one to one.
    """

    def __init__(
        self,
        stacks: Sequence[ZStack],
        config: PairConfig,
        normalization: Normalization,
        *,
        split: Literal["train", "val"] = "train",
        val_fraction: float = 0.25,
        split_by: Literal["stack", "region"] = "stack",
        seed: int = 0,
        target_stacks: Sequence[ZStack] | None = None,
        target_normalization: TargetNormalization | None = None,
    ) -> None:
        self._stacks = list(stacks)
        self.config = config
        self.normalization = normalization
        self.split = split
        self.split_by = split_by
        self.seed = seed
        if not self._stacks:
            raise ValueError("PairSampler needs at least one stack")
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if split_by not in ("stack", "region"):
            raise ValueError(f"split_by must be 'stack' or 'region', got {split_by!r}")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.val_fraction = float(val_fraction)
        _check_same_pixel_size(self._stacks)
        self._targets = (
            None
            if target_stacks is None
            else _check_targets(self._stacks, target_stacks)
        )
        self.target_normalization = (
            None
            if self._targets is None
            else target_normalization or TargetNormalization.fit(self._targets)
        )
        self._regions = self._split_regions(split)
        # Target/input brightness ratio per region, from this side of the split only
        # (validation pixels must not leak into training, not even as one number).
        self._brightness = [1.0] * len(self._regions)
        self._ratios = [1.0] * len(self._regions)
        if self._targets is not None and self.target_normalization is not None:
            self._brightness = [
                self.target_normalization.brightness_ratio(
                    self._stacks[r.stack_index].data[
                        :, r.y_start : r.y_stop, r.x_start : r.x_stop
                    ],
                    self._targets[r.stack_index].data[
                        :, r.y_start : r.y_stop, r.x_start : r.x_stop
                    ],
                    normalization,
                )
                for r in self._regions
            ]
            self._ratios = [
                self.target_normalization.ratio(b) for b in self._brightness
            ]
        crop = config.crop
        for region in self._regions:
            h = region.y_stop - region.y_start
            w = region.x_stop - region.x_start
            if crop > h or crop > w:
                source = self._stacks[region.stack_index].source
                raise ValueError(
                    f"crop {crop} is larger than the {split} region ({h}×{w} pixels) "
                    f"of {source}; use a smaller crop"
                    + (" or val_fraction" if split_by == "region" else "")
                )
        # Crops are drawn in proportion to how many distinct (plane, position)
        # choices each region offers, so large stacks are not under-sampled.
        counts = np.array(
            [
                self._stacks[r.stack_index].shape[0]
                * (r.y_stop - r.y_start - crop + 1)
                * (r.x_stop - r.x_start - crop + 1)
                for r in self._regions
            ],
            dtype=np.float64,
        )
        self._weights = counts / counts.sum()

    # --- splits ---------------------------------------------------------------

    def _split_regions(self, split: str) -> list[SplitRegion]:
        """The regions of one side of the split (the same for every sampler)."""
        if self.split_by == "stack":
            n = len(self._stacks)
            if n < 2:
                raise ValueError(
                    "split_by='stack' holds out whole stacks and needs at least 2; "
                    "with a single stack use split_by='region'"
                )
            order = np.random.default_rng(self.seed).permutation(n)
            n_val = min(max(1, round(self.val_fraction * n)), n - 1)
            held_out = set(order[:n_val].tolist())
            return [
                SplitRegion(i, 0, s.shape[1], 0, s.shape[2])
                for i, s in enumerate(self._stacks)
                if (i in held_out) == (split == "val")
            ]
        regions = []
        for i, stack in enumerate(self._stacks):
            _, height, width = stack.shape
            # the band runs across the longer axis, so both sides stay wide
            length = max(height, width)
            n_val = min(max(1, round(self.val_fraction * length)), length - 1)
            boundary = length - n_val  # validation: the last n_val columns (rows)
            lo, hi = (0, boundary) if split == "train" else (boundary, length)
            if width >= height:
                regions.append(SplitRegion(i, 0, height, lo, hi))
            else:
                regions.append(SplitRegion(i, lo, hi, 0, width))
        return regions

    def held_out_stacks(self) -> list[ZStack]:
        """The validation side of the split, as stacks cropped to it.

        Whole held-out stacks for ``split_by="stack"``; for ``"region"`` each
        stack cut to its held-out band (``source`` gets an ``[x=a:b]`` suffix).
        The same for the train and the val sampler of one split, so evaluation
        code can score a model on pixels training never saw.
        """
        return [
            self._stacks[r.stack_index].crop(r.y_start, r.y_stop, r.x_start, r.x_stop)
            for r in self._split_regions("val")
        ]

    def held_out_target_stacks(self) -> list[ZStack] | None:
        """The target stacks cut like `held_out_stacks` (None: not cross-modal)."""
        if self._targets is None:
            return None
        return [
            self._targets[r.stack_index].crop(r.y_start, r.y_stop, r.x_start, r.x_stop)
            for r in self._split_regions("val")
        ]

    @property
    def stacks(self) -> list[ZStack]:
        """All stacks given to the sampler (both sides of the split)."""
        return list(self._stacks)

    @property
    def target_stacks(self) -> list[ZStack] | None:
        """The target stacks of cross-modality training, else None."""
        return None if self._targets is None else list(self._targets)

    @property
    def target_brightness_ratios(self) -> tuple[float, ...]:
        """Per region (see `regions`), the target/input brightness ratio measured.

        ``S_target / S_input`` (see `TargetNormalization`); 1 without targets.
        """
        return tuple(self._brightness)

    @property
    def regions(self) -> tuple[SplitRegion, ...]:
        """The parts of the stacks this sampler draws crops from."""
        return tuple(self._regions)

    @property
    def stack_indices(self) -> tuple[int, ...]:
        """Indices (into `stacks`) of the stacks this sampler draws from."""
        return tuple(r.stack_index for r in self._regions)

    # --- sampling -------------------------------------------------------------

    def sample(
        self, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw one augmented training pair.

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of randomness (the caller owns reproducibility).

        Returns
        -------
        input, dpm_um, target : numpy.ndarray
            ``(crop, crop)`` float32 each. Input and target are normalized with
            the input crop's scale (cross-modal: see `TargetNormalization`); the
            DPM is in µm.
        """
        crop = self.config.crop
        k = int(rng.choice(len(self._regions), p=self._weights))
        region = self._regions[k]
        stack = self._stacks[region.stack_index]
        y0 = int(rng.integers(region.y_start, region.y_stop - crop + 1))
        x0 = int(rng.integers(region.x_start, region.x_stop - crop + 1))
        if rng.random() < self.config.surface_fraction:
            plane, dpm = self._surface_dpm(stack, rng)
        else:
            plane, dpm = self._constant_dpm(stack, rng)
        pair = self._pair(k, plane, dpm, y0, x0)
        return self._augment(pair, rng)

    def batch(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` pairs stacked as network input and target.

        Parameters
        ----------
        n : int
            Batch size.
        rng : numpy.random.Generator
            Source of randomness.

        Returns
        -------
        x : numpy.ndarray
            ``(n, 2, crop, crop)`` float32: channel 0 the normalized input, channel
            1 the DPM divided by ``config.dz_range_um`` (so it lies in [-1, 1]).
        y : numpy.ndarray
            ``(n, 1, crop, crop)`` float32 normalized targets.
        """
        crop = self.config.crop
        x = np.empty((n, 2, crop, crop), dtype=np.float32)
        y = np.empty((n, 1, crop, crop), dtype=np.float32)
        for k in range(n):
            image, dpm, target = self.sample(rng)
            x[k, 0] = image
            x[k, 1] = dpm / self.config.dz_range_um
            y[k, 0] = target
        return x, y

    def stack_batch(
        self, n: int, rng: np.random.Generator, planes_um: Sequence[float]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw ``n`` inputs, each with its targets at every distance of a fixed stack.

        For the ``"deepz-stack"`` architecture: the network sees the input plane
        alone and predicts all ``planes_um`` at once. A distance that leaves the
        recorded stack has no target; ``mask`` marks it so the loss skips it.
        Cross-modality targets are not supported here.

        Returns
        -------
        x : numpy.ndarray
            ``(n, 1, crop, crop)`` float32 normalized inputs.
        y : numpy.ndarray
            ``(n, K, crop, crop)`` float32 normalized targets (0 where masked).
        mask : numpy.ndarray
            ``(n, K)`` float32, 1 where the target exists.

        Raises
        ------
        ValueError
            With target stacks (cross-modality).
        """
        if self._targets is not None:
            raise ValueError(
                "stack batches are for same-modality training; cross-modality "
                "targets need the deepz-unet architecture"
            )
        crop = self.config.crop
        distances = np.asarray(planes_um, dtype=np.float64)
        x = np.empty((n, 1, crop, crop), dtype=np.float32)
        y = np.zeros((n, distances.size, crop, crop), dtype=np.float32)
        mask = np.zeros((n, distances.size), dtype=np.float32)
        for k in range(n):
            index = int(rng.choice(len(self._regions), p=self._weights))
            region = self._regions[index]
            stack = self._stacks[region.stack_index]
            y0 = int(rng.integers(region.y_start, region.y_stop - crop + 1))
            x0 = int(rng.integers(region.x_start, region.x_stop - crop + 1))
            plane = int(rng.integers(stack.shape[0]))
            window = (slice(y0, y0 + crop), slice(x0, x0 + crop))
            raw_input = stack.data[plane][window]
            scale = self.normalization.scale_of(raw_input)
            x[k, 0] = self.normalization.apply(raw_input, scale)
            z = stack.z_um[plane] + distances
            inside = (z >= stack.z_um[0] - _Z_TOLERANCE_UM) & (
                z <= stack.z_um[-1] + _Z_TOLERANCE_UM
            )
            for j in np.flatnonzero(inside):
                y[k, j] = self.normalization.apply(
                    _plane_at(
                        stack, float(z[j]), window, clean=self.config.clean_targets
                    ),
                    scale,
                )
            mask[k] = inside
            turns = int(rng.integers(4)) if self.config.rotations else 0
            flip = bool(self.config.flips and rng.random() < 0.5)
            for array in (x[k], y[k]):
                # a copy: rot90 is a view of the array it is written back into
                turned = np.rot90(array, turns, axes=(-2, -1)).copy()
                array[...] = turned[..., ::-1] if flip else turned
        return x, y, mask

    def validation_pairs(
        self, n_inputs: int = 8, dz_values: ArrayLike | None = None
    ) -> list[ValidationPair]:
        """A fixed set of constant-DPM pairs for evaluation during training.

        The same sampler settings always give the same pairs. For each of
        ``n_inputs`` crop positions (cycling over this split's regions) and each
        dz, the input plane is one of the planes from which ``z + dz`` stays in
        the stack, so every dz is evaluated on every position where the stack is
        deep enough. No augmentation.

        Parameters
        ----------
        n_inputs : int
            Number of crop positions.
        dz_values : array_like, optional
            Refocusing distances in µm; default 9 values evenly over
            ``[-dz_range_um, +dz_range_um]``.

        Returns
        -------
        list of ValidationPair
            Ordered by position, then dz. A (position, dz) the stack is too shallow
            for is left out.
        """
        crop = self.config.crop
        if dz_values is None:
            dz_values = np.linspace(
                -self.config.dz_range_um, self.config.dz_range_um, 9
            )
        dzs = [float(v) for v in np.asarray(dz_values, dtype=np.float64).reshape(-1)]
        # its own stream: evaluation pairs must not depend on training draws
        rng = np.random.default_rng([self.seed, 0x5EED])
        pairs = []
        for k in range(n_inputs):
            index = k % len(self._regions)
            region = self._regions[index]
            stack = self._stacks[region.stack_index]
            y0 = int(rng.integers(region.y_start, region.y_stop - crop + 1))
            x0 = int(rng.integers(region.x_start, region.x_stop - crop + 1))
            z = stack.z_um
            for dz in dzs:
                fits = np.flatnonzero(
                    (z + dz >= z[0] - _Z_TOLERANCE_UM)
                    & (z + dz <= z[-1] + _Z_TOLERANCE_UM)
                )
                if fits.size == 0:
                    continue
                plane = int(fits[rng.integers(fits.size)])
                dpm = np.full((crop, crop), dz, dtype=np.float32)
                image, dpm, target = self._pair(index, plane, dpm, y0, x0)
                pairs.append(
                    ValidationPair(
                        input=image,
                        dpm_um=dpm,
                        target=target,
                        dz_um=dz,
                        source=stack.source,
                        plane_index=plane,
                        y0=y0,
                        x0=x0,
                    )
                )
        return pairs

    # --- internals ------------------------------------------------------------

    def _dz_bounds(self, stack: ZStack, plane: int) -> tuple[float, float]:
        """Range of DPM values allowed for an input plane: within ±range and stack."""
        z = stack.z_um
        limit = self.config.dz_range_um
        return max(-limit, z[0] - z[plane]), min(limit, z[-1] - z[plane])

    def _constant_dpm(
        self, stack: ZStack, rng: np.random.Generator
    ) -> tuple[int, np.ndarray]:
        plane = int(rng.integers(stack.shape[0]))
        low, high = self._dz_bounds(stack, plane)
        dz = rng.uniform(low, high)
        crop = self.config.crop
        return plane, np.full((crop, crop), dz, dtype=np.float64)

    def _surface_dpm(
        self, stack: ZStack, rng: np.random.Generator
    ) -> tuple[int, np.ndarray]:
        """A tilted plane or a paraboloid, offset so that every value fits."""
        crop = self.config.crop
        # crop coordinates spanning [-0.5, 0.5] in both directions
        axis = np.linspace(-0.5, 0.5, crop) if crop > 1 else np.zeros(1)
        v, u = np.meshgrid(axis, axis, indexing="ij")
        if rng.random() < 0.5:
            angle = rng.uniform(0.0, 2.0 * np.pi)
            direction = np.cos(angle) * u + np.sin(angle) * v
            amount = rng.uniform(0.0, self.config.max_tilt_um)
            # peak to peak of `direction` is |cos| + |sin|: scale it to `amount`
            norm = abs(np.cos(angle)) + abs(np.sin(angle))
            shape = amount * direction / norm
        else:
            cu, cv = rng.uniform(-0.25, 0.25, size=2)
            r2 = (u - cu) ** 2 + (v - cv) ** 2
            sag = rng.uniform(
                -self.config.max_curvature_um, self.config.max_curvature_um
            )
            shape = sag * r2 / max(float(r2.max()), 1e-12)
        z = stack.z_um
        room = min(2.0 * self.config.dz_range_um, z[-1] - z[0])
        span = float(np.ptp(shape))
        if span > room:
            shape *= room / span
        limit = self.config.dz_range_um
        plane_low = np.maximum(-limit, z[0] - z)  # allowed DPM values, per plane
        plane_high = np.minimum(limit, z[-1] - z)
        while True:
            lows = plane_low - shape.min()
            highs = plane_high - shape.max()
            fits = np.flatnonzero(highs >= lows)
            if fits.size:
                break
            # The surface fits the range and the stack, but not from any recorded
            # plane (coarse z steps): flatten it until it does; flat always fits.
            shape *= 0.5
        plane = int(fits[rng.integers(fits.size)])
        base = rng.uniform(lows[plane], highs[plane])
        # rounding of base + shape must not step over the bounds
        return plane, np.clip(base + shape, plane_low[plane], plane_high[plane])

    def _pair(
        self, region_index: int, plane: int, dpm: np.ndarray, y0: int, x0: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        crop = self.config.crop
        stack_index = self._regions[region_index].stack_index
        stack = self._stacks[stack_index]
        raw_input = stack.data[plane, y0 : y0 + crop, x0 : x0 + crop]
        scale = self.normalization.scale_of(raw_input)
        if self._targets is None or self.target_normalization is None:
            target = self.normalization.apply(
                target_for_dpm(
                    stack, plane, dpm, y0, x0, clean=self.config.clean_targets
                ),
                scale,
            )
        else:
            raw_target = target_for_dpm(self._targets[stack_index], plane, dpm, y0, x0)
            target = self.target_normalization.apply(
                raw_target, scale, self._ratios[region_index]
            )
        return (
            self.normalization.apply(raw_input, scale),
            np.asarray(dpm, dtype=np.float32),
            target,
        )

    def _augment(
        self,
        pair: tuple[np.ndarray, np.ndarray, np.ndarray],
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The same flip and rotation for input, DPM and target."""
        turns = int(rng.integers(4)) if self.config.rotations else 0
        flip = bool(self.config.flips and rng.random() < 0.5)
        out = []
        for array in pair:
            a = np.rot90(array, turns)
            if flip:
                a = a[:, ::-1]
            out.append(np.ascontiguousarray(a, dtype=np.float32))
        return out[0], out[1], out[2]

    def __repr__(self) -> str:
        return (
            f"PairSampler({self.split!r}, split_by={self.split_by!r}, "
            f"stacks={list(self.stack_indices)}, crop={self.config.crop}, "
            f"dz_range_um={self.config.dz_range_um})"
        )


def _plane_at(
    stack: ZStack, z: float, window: tuple[slice, slice], *, clean: bool = False
) -> np.ndarray:
    """The stack's image at one z (linear between the two bracketing planes).

    `target_for_dpm` with a constant DPM gives the same image; this scalar case
    slices whole planes instead of indexing pixel by pixel, which matters for
    stack batches (one target per output plane, 41 per input).
    """
    z_planes = stack.z_um
    z = min(max(z, z_planes[0]), z_planes[-1])
    below = int(np.searchsorted(z_planes, z, side="right")) - 1
    below = min(max(below, 0), len(z_planes) - 2)
    weight = (z - z_planes[below]) / (z_planes[below + 1] - z_planes[below])
    data = _target_data(stack, clean)
    lower = data[below][window].astype(np.float32)
    if weight < 1e-9:
        return lower
    upper = data[below + 1][window].astype(np.float32)
    return lower + np.float32(weight) * (upper - lower)


def _check_targets(
    stacks: Sequence[ZStack], target_stacks: Sequence[ZStack]
) -> list[ZStack]:
    """Target stacks that pair one to one with ``stacks``: same shape, same z."""
    targets = list(target_stacks)
    if len(targets) != len(stacks):
        raise ValueError(
            f"{len(targets)} target stacks for {len(stacks)} input stacks: give one "
            "registered target stack per input stack"
        )
    for stack, target in zip(stacks, targets, strict=True):
        if target.shape != stack.shape or not np.allclose(
            target.z_um, stack.z_um, atol=_Z_TOLERANCE_UM
        ):
            raise ValueError(
                f"target {target.source} {target.shape} does not match input "
                f"{stack.source} {stack.shape} plane for plane; register the pair "
                "first (inference._register.register_pair)"
            )
        if not np.allclose(target.pixel_um, stack.pixel_um, rtol=_PIXEL_TOLERANCE):
            raise ValueError(
                f"target {target.source} has {target.pixel_um} µm pixels, input "
                f"{stack.source} has {stack.pixel_um}: register the pair first"
            )
    return targets


def _check_same_pixel_size(stacks: Sequence[ZStack]) -> None:
    reference = np.asarray(stacks[0].pixel_um)
    for stack in stacks[1:]:
        if not np.allclose(stack.pixel_um, reference, rtol=_PIXEL_TOLERANCE):
            raise ValueError(
                f"{stack.source} has {stack.pixel_um} µm pixels but "
                f"{stacks[0].source} has {tuple(reference.tolist())}: a Deep-Z model "
                "serves one pixel size; resample the stacks or train separate models"
            )
