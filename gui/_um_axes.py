"""Axes in µm beside the slice panes, with round ticks on short axes too.

`axis_ticks` chooses the ticks (1, 2 or 5 × 10ⁿ apart, never crowded);
`MicrometreTicker` makes vispy's axes use it; `micrometre_axis` is an axis styled for
the panel and linked to a view, so its numbers follow the view's pan and zoom.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from vispy import scene
from vispy.visuals.axis import Ticker

from deepz_live.gui._vispy_common import LABEL_COLOR

__all__ = ["MicrometreTicker", "axis_ticks", "micrometre_axis"]

_AXIS_COLOR = (0.6, 0.6, 0.65, 1.0)


def axis_ticks(
    lo: float, hi: float, length_px: float, spacing_px: float = 30.0
) -> tuple[np.ndarray, np.ndarray]:
    """(major, minor) tick values in [lo, hi] for an axis ``length_px`` long.

    Majors are 1, 2 or 5 × 10ⁿ apart, at least ``spacing_px`` apart on screen (vispy's
    own choice often labels a short axis, as a z of ±9 µm, with a single tick).
    """
    lo, hi = min(lo, hi), max(lo, hi)
    if not hi > lo or not length_px > 0:
        return np.array([lo]), np.zeros(0)
    shortest = (hi - lo) * spacing_px / length_px
    decade = 10.0 ** np.floor(np.log10(shortest))
    factor = next(f for f in (1, 2, 5, 10) if f * decade >= shortest)
    step = factor * decade

    def multiples(of: float) -> np.ndarray:
        first, last = np.ceil(lo / of - 1e-9), np.floor(hi / of + 1e-9)
        return np.arange(first, last + 1) * of + 0.0  # + 0.0: no "-0" label

    minor = multiples(step / (4 if factor == 2 else 5))
    major = multiples(step)
    return major, minor[~np.isclose(minor[:, None], major[None, :]).any(axis=1)]


class MicrometreTicker(Ticker):
    """vispy's ticker with `axis_ticks` choosing the ticks."""

    def _get_tick_frac_labels(self) -> tuple[Any, Any, list[str]]:
        start, end = self.axis.domain  # end < start on a flipped axis
        length = float(np.linalg.norm(self.axis.pos[1] - self.axis.pos[0]))
        major, minor = axis_ticks(start, end, length)
        span = (end - start) or 1.0
        labels = [f"{value:g}" for value in major]
        return (major - start) / span, (minor - start) / span, labels


def micrometre_axis(orientation: str, title: str, parent: Any, view: Any) -> Any:
    """An axis widget in ``parent`` that reads the range ``view`` shows.

    ``orientation`` is vispy's side of the view (``"left"``, ``"bottom"``…).
    """
    widget = scene.AxisWidget(
        orientation=orientation,
        axis_label=title,
        axis_color=_AXIS_COLOR,
        tick_color=_AXIS_COLOR,
        text_color=LABEL_COLOR,
        axis_width=1,
        tick_width=1,
        major_tick_length=5,
        minor_tick_length=2,
        tick_label_margin=6,
        tick_font_size=7,
        axis_label_margin=27 if orientation in ("left", "right") else 22,
        axis_font_size=8,
    )
    widget.axis.ticker = MicrometreTicker(widget.axis)
    widget.parent = parent
    widget.link_view(view)  # domain: the visible range
    return widget
