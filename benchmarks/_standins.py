"""What the live-pipeline benchmarks share: the simulated scope they run on, a
processor that only waits, and the machine's description for the printed tables."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

import deepz


def simulator_scope(size: int) -> deepz.Microscope:
    """The simulator on the real clock, with a centred ``size``² camera region."""
    scope = deepz.open_microscope()
    core = scope.core
    core.setProperty("Camera", "Clock", "real")
    width = int(core.getImageWidth())
    if size < width:
        offset = (width - size) // 2
        core.setROI(offset, offset, size, size)
    scope.focus_on_specimen()
    return scope


class SleepLikeTheModel:
    """A `FrameProcessor` that takes as long as the model per volume, without the CPU.

    ``copy_frame``: every plane is the frame (something for a panel to draw), or
    zeros (no work at all).
    """

    def __init__(
        self, planes: tuple[float, ...], seconds: float, *, copy_frame: bool
    ) -> None:
        self.planes_um = planes
        self.seconds = seconds
        self.copy_frame = copy_frame
        self.shape: tuple[int, int] = (1, 1)

    def setup(self, frame_shape, dtype, metadata) -> None:
        self.shape = frame_shape

    def process(self, frame: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        if not self.copy_frame:
            return np.zeros((len(self.planes_um), *self.shape), np.float32)
        volume = np.empty((len(self.planes_um), *self.shape), np.float32)
        volume[:] = frame
        return volume

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"kind": "sleep", "seconds": self.seconds}


def machine_description() -> str:
    """CPU model, CPU count and architecture, for quoting figures."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.machine()}"
