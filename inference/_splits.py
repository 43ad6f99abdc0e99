"""Train/validation splits of z-stacks that never share a pixel.

Validation must never see training pixels, or it measures memory rather than
refocusing. A split is a list of `SplitRegion` (the part of one stack's field a side
draws from), and both sides of one split are computed by the same rule from the same
settings, so a training sampler and a validation sampler always agree:

``split_by="stack"``
    Whole stacks are held out (which ones depends on the seed only); needs 2 stacks.
``split_by="region"``
    A band of every field is held out: the last ``val_fraction`` of its longer axis,
    so both sides stay wide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from deepz_live.inference._zstack import ZStack

__all__ = ["SplitRegion", "cut_to_regions", "split_regions"]


class SplitRegion(NamedTuple):
    """The part of one stack's field a sampler draws crops from (half-open)."""

    stack_index: int
    y_start: int
    y_stop: int
    x_start: int
    x_stop: int


def split_regions(
    stacks: Sequence[ZStack],
    side: Literal["train", "val"],
    *,
    split_by: Literal["stack", "region"],
    val_fraction: float,
    seed: int,
) -> list[SplitRegion]:
    """The regions of one side of the split (the same for every caller).

    Raises
    ------
    ValueError
        ``split_by="stack"`` with a single stack.
    """
    if split_by == "stack":
        n = len(stacks)
        if n < 2:
            raise ValueError(
                "split_by='stack' holds out whole stacks and needs at least 2; "
                "with a single stack use split_by='region'"
            )
        order = np.random.default_rng(seed).permutation(n)
        n_val = min(max(1, round(val_fraction * n)), n - 1)
        held_out = set(order[:n_val].tolist())
        return [
            SplitRegion(i, 0, s.shape[1], 0, s.shape[2])
            for i, s in enumerate(stacks)
            if (i in held_out) == (side == "val")
        ]
    regions = []
    for i, stack in enumerate(stacks):
        _, height, width = stack.shape
        # the band runs across the longer axis, so both sides stay wide
        length = max(height, width)
        n_val = min(max(1, round(val_fraction * length)), length - 1)
        boundary = length - n_val  # validation: the last n_val columns (rows)
        lo, hi = (0, boundary) if side == "train" else (boundary, length)
        if width >= height:
            regions.append(SplitRegion(i, 0, height, lo, hi))
        else:
            regions.append(SplitRegion(i, lo, hi, 0, width))
    return regions


def cut_to_regions(
    stacks: Sequence[ZStack], regions: Sequence[SplitRegion]
) -> list[ZStack]:
    """Each region as a stack of its own (`ZStack.crop`; whole stacks stay whole)."""
    return [
        stacks[r.stack_index].crop(r.y_start, r.y_stop, r.x_start, r.x_stop)
        for r in regions
    ]
