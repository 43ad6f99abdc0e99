"""Deep-Z training pairs from measured z-stacks: `PairConfig` and `PairSampler`.

A pair is ``(input plane crop, DPM, target)``: the network sees one recorded plane
and a digital propagation matrix (per-pixel refocusing distance, µm) and must
produce the image at ``z_input + DPM``. The sampler puts together the parts that
live in their own modules: a side of a train/val split that never shares pixels with
the other (`split_regions`), a DPM (`constant_dpm`, `surface_dpm`), the target
interpolated at ``z_input + DPM`` (`target_for_dpm`) and its normalization with the
input crop's scale (cross-modality targets: `TargetNormalization`), then the same
flips and rotations for input, DPM and target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from deepz_live.inference._dpms import constant_dpm, surface_dpm
from deepz_live.inference._splits import SplitRegion, cut_to_regions, split_regions
from deepz_live.inference._target_normalization import TargetNormalization
from deepz_live.inference._targets import (
    Z_TOLERANCE_UM,
    check_same_pixel_size,
    check_target_stacks,
    plane_at,
    target_for_dpm,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import ArrayLike

    from deepz_live.inference._normalize import Normalization
    from deepz_live.inference._zstack import ZStack

__all__ = ["PairConfig", "PairSampler", "ValidationPair"]


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
        check_same_pixel_size(self._stacks)
        self._targets = (
            None
            if target_stacks is None
            else check_target_stacks(self._stacks, target_stacks)
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

    def _split_regions(self, side: Literal["train", "val"]) -> list[SplitRegion]:
        """The regions of one side of this sampler's split."""
        return split_regions(
            self._stacks,
            side,
            split_by=self.split_by,
            val_fraction=self.val_fraction,
            seed=self.seed,
        )

    def held_out_stacks(self) -> list[ZStack]:
        """The validation side of the split, as stacks cropped to it.

        Whole held-out stacks for ``split_by="stack"``; for ``"region"`` each
        stack cut to its held-out band (``source`` gets an ``[x=a:b]`` suffix).
        The same for the train and the val sampler of one split, so evaluation
        code can score a model on pixels training never saw.
        """
        return cut_to_regions(self._stacks, self._split_regions("val"))

    def held_out_target_stacks(self) -> list[ZStack] | None:
        """The target stacks cut like `held_out_stacks` (None: not cross-modal)."""
        if self._targets is None:
            return None
        return cut_to_regions(self._targets, self._split_regions("val"))

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
            plane, dpm = surface_dpm(self.config, stack, rng)
        else:
            plane, dpm = constant_dpm(self.config, stack, rng)
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
            inside = (z >= stack.z_um[0] - Z_TOLERANCE_UM) & (
                z <= stack.z_um[-1] + Z_TOLERANCE_UM
            )
            for j in np.flatnonzero(inside):
                y[k, j] = self.normalization.apply(
                    plane_at(
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
                    (z + dz >= z[0] - Z_TOLERANCE_UM)
                    & (z + dz <= z[-1] + Z_TOLERANCE_UM)
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
