"""Live refocusing with a callback: every frame of a short time-lapse into a volume.

Run::

    python examples/live_refocus_callback.py [OUTPUT_FOLDER]

The simulated microscope records 5 frames of a worm (a 128×128 camera region keeps it
quick on a CPU) and the bundled Deep-Z model refocuses each into 9 planes, -8 to 8 µm.
``policy="all"`` refocuses every frame (catching up after the camera if it must);
the volumes are saved next to the raw file. The callback runs on the refocusing
thread, so it only does something quick: it measures the detail (standard deviation)
of each plane, printed as a bar per plane.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import deepz

BARS = " ▁▂▃▄▅▆▇█"


def main(folder: Path) -> None:
    detail: dict[int, np.ndarray] = {}

    def on_volume(index: int, volume: np.ndarray) -> None:
        detail[index] = volume.std(axis=(1, 2))  # one number per plane

    with deepz.open_microscope() as scope:  # the simulator
        scope.core.setROI(192, 192, 128, 128)
        scope.focus_on_specimen()
        with deepz.live_refocus(
            scope,
            frames=5,
            out=folder / "worm.ome.tif",
            model="default",
            planes_um="-8:8:2",
            policy="all",
            save_volumes=True,
            on_volume=on_volume,
        ) as session:
            summary = session.wait()

    planes = summary.planes_um
    print(f"detail per plane, {planes[0]:+g} to {planes[-1]:+g} µm:")
    for index, per_plane in sorted(detail.items()):
        levels = np.round(8 * per_plane / per_plane.max()).astype(int)
        print(f"  frame {index}: {''.join(BARS[k] for k in levels)}")
    print(
        f"{summary.volumes} volumes of {len(summary.planes_um)} planes in "
        f"{summary.volume_output}: {summary.volumes_per_s:.2f} volumes/s, "
        f"latency p50 {summary.latency_p50_ms:.0f} ms"
    )


if __name__ == "__main__":
    main(
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(tempfile.mkdtemp(prefix="deepz-"))
    )
