"""A raw file that was never closed (SIGKILL) still says what run it came from."""

from __future__ import annotations

import signal
import sys
import textwrap
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

from deepz_live.acquisition import (
    OmeTiffWriter,
    read_frame_metadata,
    read_run_metadata,
)

if TYPE_CHECKING:
    from pathlib import Path

CHILD = textwrap.dedent(
    """
    import sys
    from deepz_live.acquisition import acquire_timelapse, open_microscope

    with open_microscope() as scope:
        scope.core.setProperty("Camera", "Binning", "4")
        scope.core.setProperty("Camera", "Clock", "real")
        acquire_timelapse(
            scope, frames=5000, interval_ms=0, exposure_ms=10, out=sys.argv[1],
            progress=lambda done, total: print(f"frame {done}", flush=True),
        )
    """
)


def test_run_metadata_of_a_file_never_closed(tmp_path: Path) -> None:
    path = tmp_path / "open.ome.tif"
    run = {"kind": "timelapse", "settings": {"frames": 9}, "pixel_size_um": 0.5}
    writer = OmeTiffWriter(
        path, frame_shape=(4, 6), pixel_size_um=0.5, run_metadata=run
    )
    try:
        for k in range(3):
            writer.append(np.full((4, 6), k, np.uint16), {"time_s": 0.1 * k})
        # what a killed process leaves: pages, no OME-XML
        assert read_run_metadata(path) == run
        assert read_frame_metadata(path) == [{"time_s": 0.1 * k} for k in range(3)]
        assert tifffile.imread(path).shape == (3, 4, 6)
    finally:
        writer.close()
    # closed: the OME-XML holds it (with what close adds), page 0's JSON is gone
    assert read_run_metadata(path) == run
    assert read_frame_metadata(path) == [{"time_s": 0.1 * k} for k in range(3)]
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        assert "deepz_run" not in (tif.pages[0].description or "")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigkill_keeps_the_run_metadata(tmp_path: Path, child_after_frames) -> None:
    raw = tmp_path / "killed.ome.tif"
    child, done = child_after_frames(["-c", CHILD, str(raw)])
    child.send_signal(signal.SIGKILL)
    _, errors = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, errors
    assert done >= 5, errors

    with tifffile.TiffFile(raw) as tif:
        assert not tif.is_ome  # never closed
        frames = len(tif.pages)
    assert frames >= 5
    run = read_run_metadata(raw)
    assert run["kind"] == "timelapse"
    assert run["settings"] == {
        "frames": 5000,
        "interval_ms": 0,
        "exposure_ms": 10,
        "led_intensity": None,
    }
    assert run["pixel_size_um"] > 0
    assert run["camera"] == "Camera"
    assert run["devices"]["Camera"]["Binning"] == "4"
    assert "result" not in run  # the run never ended
    assert len(read_frame_metadata(raw)) == frames
    assert "deepz_run" not in read_frame_metadata(raw)[0]
