"""The simulator's `Bench` behind a core, found without importing the simulator.

`DeepzCore` (pixel size) and `DeepzEngine` (per-snap camera metadata, warm-up) treat
the simulated microscope specially. They must not import
``deepz_live.acquisition.simulator`` to find out whether it is there: on a real
microscope that would load the simulator and its optics for nothing.

They don't need to. UniMMCore creates a Python device by importing its module, so a
core can hold simulator devices only once the simulator package is in `sys.modules`.
`simulator_bench` looks it up there and asks it; without it, the answer is None.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deepz_live.acquisition.simulator import Bench

__all__ = ["SIMULATOR_PACKAGE", "simulator_bench"]

SIMULATOR_PACKAGE = "deepz_live.acquisition.simulator"
"""The package whose Python devices make up the simulated microscope."""


def simulator_bench(core: Any) -> Bench | None:
    """The simulator bench whose devices are loaded in ``core``, or None.

    Never imports the simulator: a core whose process has not imported it holds no
    simulator devices.
    """
    simulator = sys.modules.get(SIMULATOR_PACKAGE)
    bench_for = getattr(simulator, "bench_for", None)  # None while it is importing
    if bench_for is None:
        return None
    bench: Bench | None = bench_for(core)
    return bench
