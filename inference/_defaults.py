"""Training settings chosen from the data, so that no option must be guessed.

`training_defaults` fills in whatever the user left unset from the stacks themselves:

- **dz range**: at most 10 µm (Deep-Z's ~±10 µm at 20x/0.75; Wu et al. 2019), at
  most half the stacks' z extent (an input plane near the middle must see targets on
  both sides), and, where the NA and wavelength are recorded, at most ten depths of
  field (Deep-Z extends the depth of field about twentyfold, i.e. ±10 DOF).
- **crop**: large enough to hold the widest defocus blur at the range's end (where
  the NA is known; the blur's diameter is about ``2·dz·tan(asin(NA/n))``), at least
  128 px, and small enough to fit both sides of the split.
- **split**: whole stacks held out when there are several; with a single stack, a
  band along its longer axis wide enough to hold a validation window.

Every choice is returned with a one-line reason that the command line prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from deepz_live.inference._errors import InferenceError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from deepz_live.inference._zstack import ZStack

__all__ = ["TrainingDefaults", "training_defaults"]

#: Deep-Z's reported range at 20x/0.75 (Wu et al. 2019), the cap of the default
MAX_DEFAULT_RANGE_UM = 10.0
#: the smallest training crop chosen automatically (when the images allow it)
MIN_DEFAULT_CROP = 128
#: the share of stacks or of the field held out for validation by default
DEFAULT_VAL_FRACTION = 0.25


@dataclass(frozen=True)
class TrainingDefaults:
    """Settings for one training run, each with why it was chosen."""

    dz_range_um: float
    crop: int
    split_by: Literal["stack", "region"]
    val_fraction: float
    reasons: list[str] = field(default_factory=list)


def immersion_index(na: float) -> float:
    """The immersion's refractive index, guessed from the NA: air, water or oil."""
    return 1.0 if na <= 0.95 else 1.33 if na <= 1.25 else 1.515


def depth_of_field_um(na: float, wavelength_um: float, pixel_um: float) -> float:
    """λ·n/NA² + n·e/(M·NA) (e/M: the pixel size at the sample)."""
    n = immersion_index(na)
    return wavelength_um * n / na**2 + n * pixel_um / na


def blur_diameter_px(na: float, dz_um: float, pixel_um: float) -> float:
    """Geometric diameter of the defocus blur of a point ``dz_um`` out of focus."""
    n = immersion_index(na)
    half_angle = math.asin(min(na / n, 0.999))
    return 2.0 * dz_um * math.tan(half_angle) / pixel_um


def training_defaults(
    stacks: Sequence[ZStack],
    *,
    multiple: int,
    dz_range_um: float | None = None,
    crop: int | None = None,
    split_by: str | None = None,
    val_fraction: float | None = None,
    range_step_um: float | None = None,
) -> TrainingDefaults:
    """Fill in the unset training settings from the stacks (see module docstring).

    Parameters
    ----------
    stacks : sequence of ZStack
        The training data.
    multiple : int
        Crops must be a multiple of this (the U-Net's down-sampling).
    dz_range_um, crop, split_by, val_fraction : optional
        The user's choices; None means "choose from the data". A user's value is
        kept, and checked against the data with a clear error.
    range_step_um : float, optional
        A chosen range is also a whole number of these steps where it can be (the
        plane step of a ``"deepz-stack"`` model, whose planes must divide it).

    Raises
    ------
    InferenceError
        No stacks, or a setting the data cannot support, with what to do instead.
    """
    if not stacks:
        raise InferenceError("Training needs at least one z-stack.")
    reasons: list[str] = []
    extents = [float(s.z_um[-1] - s.z_um[0]) for s in stacks]
    step = max(s.voxel_um[0] for s in stacks)

    # -- range -------------------------------------------------------------------
    if dz_range_um is None:
        half = min(extents) / 2
        limit = min(MAX_DEFAULT_RANGE_UM, half)
        why = f"half the shortest stack's z extent ({min(extents):.3g} µm)"
        if half >= MAX_DEFAULT_RANGE_UM:
            why = "Deep-Z's ±10 µm"
        optics = _optics(stacks)
        if optics is not None:
            dof = depth_of_field_um(*optics)
            if 10 * dof < limit:
                limit = 10 * dof
                why = f"ten depths of field ({dof:.2g} µm at NA {optics[0]:g})"
        # whole multiples of the plane step (at least one step), without float dust
        dz_range_um = round(max(step, math.floor(limit / step + 1e-9) * step), 6)
        if range_step_um:
            steps = math.floor(dz_range_um / range_step_um + 1e-6)
            if steps >= 1:
                dz_range_um = round(steps * range_step_um, 6)
                why += f", in whole {range_step_um:g} µm output-plane steps"
        reasons.append(f"dz range ±{dz_range_um:.3g} µm: {why}")
    elif not (math.isfinite(dz_range_um) and dz_range_um > 0):
        raise InferenceError(
            f"The dz range must be more than 0 µm, got {dz_range_um}; give e.g. "
            "--dz-range-um 5, or leave it out to choose it from the stacks."
        )
    longest = max(extents)
    if dz_range_um > longest + 1e-6:
        raise InferenceError(
            f"The dz range ±{dz_range_um:g} µm reaches beyond every stack (the "
            f"longest spans {longest:.3g} µm): no training pair would reach it. Use "
            f"--dz-range-um {max(step, longest / 2):.3g} or record taller stacks."
        )

    # -- split -------------------------------------------------------------------
    if split_by is None:
        split_by = "stack" if len(stacks) >= 2 else "region"
        reasons.append(
            f"validation: {'whole stacks held out' if split_by == 'stack' else 'a band along the longer axis of the field held out'}"  # noqa: E501
            f" ({len(stacks)} stack{'s' if len(stacks) != 1 else ''})"
        )
    if split_by not in ("stack", "region"):
        raise InferenceError(f"split_by must be 'stack' or 'region', got {split_by!r}.")
    if split_by == "stack" and len(stacks) < 2:
        raise InferenceError(
            "Holding out whole stacks needs at least two; give more stacks or use "
            "--split-by region (a band of the field is held out)."
        )

    # -- crop and validation share -----------------------------------------------
    short = min(min(s.shape[1], s.shape[2]) for s in stacks)
    long = min(max(s.shape[1], s.shape[2]) for s in stacks)
    # what fits: the whole short side, and (region split) both sides of the band
    room = short if split_by == "stack" else min(short, long // 2)
    fits = (room // multiple) * multiple
    if crop is None:
        if fits < multiple:
            raise InferenceError(
                f"The images ({short} px on their short side) are too small to train "
                f"on: crops must be multiples of {multiple} px and fit "
                + ("each image." if split_by == "stack" else "both sides of the split.")
            )
        wanted = MIN_DEFAULT_CROP
        optics = _optics(stacks)
        if optics is not None:
            blur = blur_diameter_px(optics[0], dz_range_um, optics[2])
            # the blur and half as much again of context around it
            wanted = max(wanted, math.ceil(1.5 * blur / multiple) * multiple)
        crop = min(wanted, fits)
        reasons.append(
            f"crop {crop} px"
            + (f": holds the widest blur ({blur:.0f} px)" if optics else "")
            + (" (limited by the image size)" if crop < wanted else "")
        )
    elif crop < multiple or crop % multiple:
        raise InferenceError(
            f"Crop {crop} must be a positive multiple of {multiple} (the U-Net's "
            f"down-sampling); choose e.g. {max(multiple, round(crop / multiple) * multiple)}."  # noqa: E501
        )
    elif crop > short:
        raise InferenceError(
            f"Crop {crop} px is larger than the images ({short} px on their short "
            f"side); choose at most {max(multiple, fits)}."
        )
    fraction_given = val_fraction is not None
    if val_fraction is None:
        val_fraction = DEFAULT_VAL_FRACTION
        if split_by == "region":
            # the held-out band must hold one crop
            val_fraction = max(val_fraction, crop / long)
            reasons.append(
                f"validation band {val_fraction:.0%} of the field ({crop} px or more)"
            )
    elif not 0 < val_fraction < 1:
        raise InferenceError(
            f"The validation share must be between 0 and 1 (exclusive), got "
            f"{val_fraction}; e.g. --val-fraction 0.25."
        )
    if split_by == "region":
        band = round(val_fraction * long)
        if not fraction_given and crop > room:
            raise InferenceError(
                f"Crop {crop} px does not fit both sides of the validation split: "
                f"the field's longer side ({long} px) is cut into a training and a "
                "validation band, and each must hold a crop. "
                + (
                    f"Choose --crop {fits} or less, or use "
                    if fits >= multiple
                    else "Use "
                )
                + "--split-by stack with two or more stacks."
            )
        if band < crop or long - band < crop:
            raise InferenceError(
                f"With --val-fraction {val_fraction:g} the field ({long} px) splits "
                f"into {long - band} px for training and {band} px for validation; "
                f"both must hold a {crop} px crop. Use a smaller --crop or leave "
                "--val-fraction out."
            )
    return TrainingDefaults(
        dz_range_um=float(dz_range_um),
        crop=int(crop),
        split_by=split_by,  # type: ignore[arg-type]
        val_fraction=float(val_fraction),
        reasons=reasons,
    )


def _optics(stacks: Sequence[ZStack]) -> tuple[float, float, float] | None:
    """``(NA, wavelength µm, pixel µm)`` when all stacks record the same optics."""
    nas = {s.na for s in stacks}
    wavelengths = {s.wavelength_um for s in stacks}
    if len(nas) != 1 or len(wavelengths) != 1:
        return None
    na, wavelength = nas.pop(), wavelengths.pop()
    if not na or not wavelength:
        return None
    return float(na), float(wavelength), float(stacks[0].pixel_um[1])
