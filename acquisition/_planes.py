"""The refocus planes of a run: one specification and one set of rules.

A volume's planes are distances from the focal plane in µm, strictly increasing (a
volume is a z-stack: its first plane is the deepest below focus), finite, at most
`MAX_PLANES` of them, and, when a model is known, within its trained ±range. The
command line (``--planes -8:8:2`` or ``-4,0,4``), the panel's from/to/step fields,
the Python API and the live pipeline all build and check planes here, so they accept
and refuse the same things with the same messages.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "DEFAULT_PLANE_STEP_UM",
    "MAX_PLANES",
    "PlaneError",
    "check_planes",
    "default_planes",
    "parse_planes",
    "planes_from_range",
]

MAX_PLANES = 201
"""Most planes per volume: ±10 µm every 0.1 µm, finer than any objective's depth of
field (about 0.5 µm at NA 1.4); every plane costs one network pass per frame."""

DEFAULT_PLANE_STEP_UM = 2.0
_DEFAULT_RANGE_FRACTION = 0.8
# A plane this close to the range's edge (relative) is inside it: 10.000000001 µm
# typed or computed for a ±10 µm model is not an extrapolation.
_RANGE_TOLERANCE = 1e-6
# A step that fits a whole number of times, up to float error, includes STOP.
_STEP_TOLERANCE = 1e-9

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*:\s*({_NUMBER})\s*:\s*({_NUMBER})\s*$")


class PlaneError(ValueError):
    """Planes that cannot be refocused to; the message names the fix (one line)."""


def _listed(planes: Iterable[float]) -> str:
    return ", ".join(f"{p:g}" for p in planes)


def planes_from_range(
    start_um: float, stop_um: float, step_um: float
) -> tuple[float, ...]:
    """Planes from ``start_um`` to ``stop_um`` inclusive every ``step_um`` (µm).

    Raises
    ------
    PlaneError
        A value that is not a finite number, a step ≤ 0, STOP below START, or more
        than `MAX_PLANES` planes.
    """
    values = (start_um, stop_um, step_um)
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
        raise PlaneError(
            f"the range {_listed(values)} must be three finite numbers in µm "
            "(from, to, step)."
        )
    if not step_um > 0:
        raise PlaneError(
            f"the step must be more than 0 µm, got {step_um:g} (e.g. -8:8:2)."
        )
    if stop_um < start_um:
        raise PlaneError(
            f"the last plane ({stop_um:g} µm) is below the first ({start_um:g} µm): "
            "go from the lower plane to the higher one, e.g. -8:8:2."
        )
    steps = (stop_um - start_um) / step_um + _STEP_TOLERANCE
    # a huge range over a tiny step overflows to infinity, which floor() refuses
    count = math.floor(steps) + 1 if math.isfinite(steps) else math.inf
    if count > MAX_PLANES:
        planes = f"{count}" if math.isfinite(count) else "Too many"
        raise PlaneError(
            f"{planes} planes from {start_um:g} to {stop_um:g} µm every {step_um:g} "
            f"µm; at most {MAX_PLANES}: choose a larger step or a narrower range."
        )
    count = int(count)
    # rounding keeps 0.1-µm steps printable (0.30000000000000004 -> 0.3)
    return tuple(round(start_um + k * step_um, 6) for k in range(count))


def parse_planes(text: str) -> tuple[float, ...]:
    """Planes from ``START:STOP:STEP`` (µm, STOP included) or a list ``A,B,C``.

    Parameters
    ----------
    text : str
        ``"-8:8:2"`` gives the 9 planes -8, -6, ..., 8; ``"-4,0,2.5"`` three planes.

    Returns
    -------
    tuple of float
        Checked by `check_planes` (without a model range).

    Raises
    ------
    PlaneError
        Malformed text, or planes `check_planes` refuses.
    """
    match = _RANGE.match(text)
    if match:
        start, stop, step = (float(v) for v in match.groups())
        return planes_from_range(start, stop, step)
    try:
        planes = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        planes = ()
    if not planes:
        raise PlaneError(
            f"{text!r}: expected START:STOP:STEP in µm (STOP included, e.g. -8:8:2 "
            "for 9 planes) or a list such as -4,0,4."
        )
    return check_planes(planes)


def check_planes(
    planes: Iterable[float],
    dz_range_um: float | None = None,
    *,
    model: str = "the model",
) -> tuple[float, ...]:
    """The planes as a tuple of floats, or `PlaneError` saying what is wrong.

    Parameters
    ----------
    planes : iterable of float
        Distances from the focal plane, µm.
    dz_range_um : float, optional
        The model's trained range (±µm): planes beyond it are refused, since a
        model does not extrapolate.
    model : str
        The model's name, for the message.

    Raises
    ------
    PlaneError
        No planes, a value that is not a finite number, planes that do not strictly
        increase, more than `MAX_PLANES`, or planes outside ``±dz_range_um``.
    """
    try:
        values = tuple(float(p) for p in planes)
    except (TypeError, ValueError) as exc:
        raise PlaneError(f"planes must be distances in µm: {exc}.") from None
    if not values:
        raise PlaneError("choose at least one plane (µm from the focus), e.g. -8:8:2.")
    if not all(math.isfinite(p) for p in values):
        raise PlaneError(f"planes must be finite numbers (µm), got {_listed(values)}.")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise PlaneError(
            f"planes must increase (each deeper plane first), got {_listed(values)}: "
            "list them in increasing order, e.g. -4,0,4."
        )
    if len(values) > MAX_PLANES:
        raise PlaneError(
            f"{len(values)} planes is more than {MAX_PLANES}: choose a larger step."
        )
    if dz_range_um is not None:
        limit = dz_range_um * (1 + _RANGE_TOLERANCE)
        outside = [p for p in values if abs(p) > limit]
        if outside:
            edge = math.floor(dz_range_um)
            raise PlaneError(
                f"{_listed(outside[:3])} µm {'is' if len(outside) == 1 else 'are'} "
                f"outside the trained range of {model}, ±{dz_range_um:g} µm (a model "
                f"does not extrapolate): choose planes within it, e.g. "
                f"{-edge}:{edge}:2."
            )
    return values


def default_planes(
    dz_range_um: float, step_um: float = DEFAULT_PLANE_STEP_UM
) -> tuple[float, ...]:
    """Multiples of ``step_um`` within ±80 % of a model's trained range.

    ±8 µm (9 planes) for a ±10 µm model: the outer part of the range is where a
    Deep-Z model is least reliable.
    """
    half = math.floor(_DEFAULT_RANGE_FRACTION * dz_range_um / step_um + 1e-9)
    return tuple(float(k * step_um) for k in range(-half, half + 1))
