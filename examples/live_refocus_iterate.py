"""Live preview by iteration: the newest frame refocused, with telemetry.

Run::

    python examples/live_refocus_iterate.py [OUTPUT_FOLDER]

A 40-frame time-lapse at 50 frames/s of the simulated worm (128×128 region), refocused
live with ``policy="latest"``: the refocusing thread always takes the newest frame, so
the preview keeps up with the camera and frames in between are skipped (and counted).
Every raw frame is still saved. Iterating over the session starts it and ends when
the run ends.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import deepz


def main(folder: Path) -> None:
    with deepz.open_microscope() as scope:
        scope.core.setROI(192, 192, 128, 128)
        scope.focus_on_specimen()
        session = deepz.live_refocus(
            scope,
            frames=40,
            interval_ms=20,
            out=folder / "worm.ome.tif",
            planes_um="-8:8:2",
            policy="latest",
            start=False,  # iterating starts it
        )
        with session:
            for index, volume in session:
                stats = session.stats()
                print(
                    f"frame {index:2d} -> volume {volume.shape}: "
                    f"{stats.frames_acquired} frames taken, {stats.skipped} skipped, "
                    f"latency p50 {stats.latency_p50_ms:.0f} ms"
                )
    summary = session.summary
    assert summary is not None
    print(
        f"{summary.frames} frames saved in {summary.raw_output}; {summary.volumes} "
        f"volumes made live, {summary.skipped} frames skipped (each volume is of the "
        "newest frame)"
    )


if __name__ == "__main__":
    main(
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(tempfile.mkdtemp(prefix="deepz-"))
    )
