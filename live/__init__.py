"""Live and offline refocusing: where acquisition meets inference.

`RefocuserProcessor` adapts an `inference.Refocuser` to acquisition's `FrameProcessor`
protocol; `live_refocus` runs a `RunPlan` through a `LiveSession`, refocusing every
frame of a time-lapse while it is taken; `refocus_file` does the same for a raw
time-lapse on disk. ``acquisition`` and ``inference`` never import each other: this
layer composes them, and the panel (``deepz_live.gui``) and the front door (``deepz``)
build on it. It imports neither of those, nor Qt.
"""

from deepz_live.live._offline import RefocusFileSummary, refocus_file
from deepz_live.live._processor import RefocuserProcessor
from deepz_live.live._session import live_refocus, plan_from

__all__ = [
    "RefocusFileSummary",
    "RefocuserProcessor",
    "live_refocus",
    "plan_from",
    "refocus_file",
]
