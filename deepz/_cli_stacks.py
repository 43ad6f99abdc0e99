"""The z-stacks given to ``deepz train`` and ``deepz evaluate``, read as both need them.

`voxel_from_option` parses ``--voxel-um``; `read_stacks_given` reads the files (the
noise-free twins a shell glob also picks up are left to their recorded stack; a file
given twice, or planes with no image in them, are refused before any work);
`read_target_stacks` pairs them with a target channel of the same files for a
cross-modality model, registered onto the input channel when asked.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import typer

from deepz._cli_options import CommandFailed, say

if TYPE_CHECKING:
    from pathlib import Path

    from deepz_live.inference import ZStack


def voxel_from_option(text: str | None) -> tuple[float, float, float] | None:
    """The ``--voxel-um Z,Y,X`` value as three positive numbers (µm), if given."""
    if text is None:
        return None
    try:
        z, y, x = (float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(
            f"--voxel-um {text!r}: expected three numbers Z,Y,X in µm, "
            "e.g. 0.5,0.325,0.325"
        ) from None
    if not all(math.isfinite(v) and v > 0 for v in (z, y, x)):
        raise typer.BadParameter(
            f"--voxel-um {text!r}: the three values must be positive numbers (µm)."
        )
    return z, y, x


def read_stacks_given(
    paths: list[Path], channel: int | None, voxel: tuple[float, float, float] | None
) -> list[ZStack]:
    """Every stack in ``paths``, skipping noise-free twins of stacks also given."""
    from deepz_live.inference import read_stacks

    given = {p.expanduser().absolute() for p in paths}
    seen: set[Path] = set()
    for path in paths:
        key = path.expanduser().resolve()
        if key in seen:
            raise typer.BadParameter(
                f"{path} is given more than once; give each stack once (a stack "
                "given twice could be trained on and held out for validation)."
            )
        seen.add(key)
    stacks: list[ZStack] = []
    for path in paths:
        name = path.name
        if ".clean." in name:
            recorded = path.with_name(name.replace(".clean.", ".", 1))
            if recorded.expanduser().absolute() in given:
                # a shell glob picks up the noise-free twins too: they are read
                # with their recorded stack (ZStack.clean), not as data of their own
                continue
        stacks.extend(read_stacks(path, channel=channel, voxel_um=voxel))
    for stack in stacks:
        _check_has_images(stack)
    return stacks


def _check_has_images(stack: ZStack) -> None:
    """Refuse a stack with uniform planes (no light, a closed shutter): no image.

    Or with pixels that are not numbers (NaN, infinite: a float TIFF from
    processing), which no normalization or score survives.
    """
    planes = stack.data.reshape(stack.data.shape[0], -1)
    finite = np.isfinite(planes).all(axis=1)
    if not finite.all():
        bad = [int(k) for k in (~finite).nonzero()[0]]
        planes_text = (
            f"plane {bad[0]} (from 0) holds"
            if len(bad) == 1
            else f"planes {', '.join(map(str, bad[:5]))}"
            + (" ..." if len(bad) > 5 else "")
            + " (from 0) hold"
        )
        raise CommandFailed(
            f"{stack.source}: {planes_text} pixels that are not numbers (NaN or "
            "infinite); replace them (e.g. in Fiji: Process > Math > Remove NaNs) "
            "or leave the stack out."
        )
    low, high = planes.min(axis=1), planes.max(axis=1)
    uniform = [int(k) for k in (low == high).nonzero()[0]]
    if not uniform:
        return
    if len(uniform) == len(planes):
        lowest, highest = float(low.min()), float(high.max())
        what = (
            f"every pixel of every plane is {lowest:g} counts"
            if lowest == highest
            else f"every plane is uniform (one value each, {lowest:g} to "
            f"{highest:g} counts)"
        )
    elif len(uniform) == 1:
        what = f"plane {uniform[0]} (from 0) is uniform: one value"
    else:
        shown = ", ".join(str(k) for k in uniform[:5])
        more = f" and {len(uniform) - 5} more" if len(uniform) > 5 else ""
        what = f"planes {shown}{more} (from 0) are uniform: one value each"
    raise CommandFailed(
        f"{stack.source}: {what}, so there is no image to learn from or score "
        "against. Was the light off or the shutter closed? Record the stack again."
    )


def read_target_stacks(
    paths: list[Path],
    inputs: list[ZStack],
    channel: int | None,
    target_channel: int,
    voxel: tuple[float, float, float] | None,
    register: bool,
) -> tuple[list[ZStack], list[ZStack], list[tuple[int, int]], list[dict]]:
    """Target stacks paired with ``inputs``, registered onto them if asked.

    Returns the inputs and targets (cropped to their overlap when registered), per
    pair the file column that became column 0 (to map column ranges), and per pair
    the shift found, for the model's provenance. Origins are ``(row, column)`` of
    the file that became ``(0, 0)``.
    """
    from deepz_live.inference import register_pair, valid_slices

    if channel is None:
        raise typer.BadParameter(
            "--target-channel needs --channel: the input channel (e.g. widefield) "
            "of the same files."
        )
    if channel == target_channel:
        raise typer.BadParameter(
            f"--channel and --target-channel are both {channel}; the target must be "
            "another channel (e.g. --channel 1 --target-channel 0)."
        )
    targets = read_stacks_given(paths, target_channel, voxel)
    if len(targets) != len(inputs):
        raise typer.BadParameter(
            f"{len(inputs)} input stacks but {len(targets)} target stacks."
        )
    out_inputs, out_targets, origins, shifts = [], [], [], []
    for stack, target in zip(inputs, targets, strict=True):
        origin = (0, 0)
        shift = (0.0, 0.0, 0.0)
        source = target.source
        if register:
            shape = stack.shape
            try:
                stack, target, shift = register_pair(stack, target)
            except ValueError as exc:
                raise typer.BadParameter(f"--register: {exc}") from None
            overlap = valid_slices(shape, shift)
            origin = (overlap[1].start, overlap[2].start)
            say(
                f"registered {target.source} onto {stack.source}: shift "
                f"dz {shift[0]:+.2f} planes, dy {shift[1]:+.2f} px, dx "
                f"{shift[2]:+.2f} px (overlap {stack.shape[0]} planes × "
                f"{stack.shape[1]}×{stack.shape[2]} px)"
            )
        out_inputs.append(stack)
        out_targets.append(target)
        origins.append(origin)
        shifts.append({"source": source, "shift_zyx": list(shift)})
    return out_inputs, out_targets, origins, shifts
