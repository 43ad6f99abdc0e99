"""The live pipeline's files after the worst: SIGKILL mid-run, a disk that fills up."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tifffile

from deepz_live.acquisition import (
    read_frame_metadata,
    read_run_metadata,
    read_volume_metadata,
)

REPO = Path(__file__).parents[2]
CHILD = Path(__file__).with_name("live_child.py")
# No pymmcore-plus log file in the child: under the disk-full test's file size limit
# a log file already larger than the limit fails every write. (pymmcore-plus 0.18
# treats PYMM_LOG_FILE=0 as "the default file"; PYTEST_RUNNING turns file logging off.)
ENV = {**os.environ, "PYTHONPATH": str(REPO), "PYTEST_RUNNING": "1"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and rlimits"),
]


def test_sigkill_mid_run_leaves_readable_raw_and_volume_files(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, str(CHILD), "kill", str(tmp_path)],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    frames_written = volumes_made = -1
    deadline = time.monotonic() + 120
    assert child.stdout is not None
    while (frames_written < 8 or volumes_made < 2) and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        # two threads print (frames: events thread, volumes: worker); print() writes
        # the newline apart, so one line may hold both reports: "frame 9volume 3"
        for kind, index in re.findall(r"(frame|volume) (\d+)", line):
            if kind == "frame":
                frames_written = int(index)
            else:
                volumes_made = int(index)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL, child.stderr.read()
    assert volumes_made >= 2, child.stderr.read()

    raw = tmp_path / "raw.ome.tif"
    data = tifffile.imread(raw)  # no OME-XML (never closed), every page complete
    assert frames_written + 1 <= data.shape[0] < 2000
    assert data.shape[1:] == (128, 128)
    assert data.std() > 0
    frames = read_frame_metadata(raw)  # from the pages' own JSON
    assert [f["frame_index"] for f in frames] == list(range(data.shape[0]))
    assert read_run_metadata(raw)["kind"] == "live"  # page 0 keeps it from the start

    with tifffile.TiffFile(tmp_path / "raw.volumes.ome.tif") as tif:
        planes = len(tif.pages)
        assert planes >= 3 * (volumes_made + 1)
        volume_zero = tif.asarray(key=[0, 1, 2])
    assert volume_zero.shape == (3, 128, 128)
    stored = read_volume_metadata(tmp_path / "raw.volumes.ome.tif")
    assert [v["frame_index"] for v in stored["volumes"]][:3] == [0, 1, 2]


def test_disk_full_mid_run(tmp_path: Path) -> None:
    """Writes past 330 kB fail half-way (EFBIG, as ENOSPC would), mid-page."""
    limit = 330_000
    result = subprocess.run(
        [sys.executable, str(CHILD), "diskfull", str(tmp_path), str(limit)],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    saved = outcome["frames"]
    assert 5 <= saved < 40
    message = outcome["error"]
    assert f"Writing raw frame {saved} to {tmp_path / 'raw.ome.tif'} failed" in message
    assert "the file size limit was reached" in message
    assert f"the {saved} frames acquired are saved in" in message
    raw = tmp_path / "raw.ome.tif"
    assert raw.stat().st_size <= limit
    data = tifffile.imread(raw)
    assert data.shape == (saved, 128, 128)
    assert [f["frame_index"] for f in read_frame_metadata(raw)] == list(range(saved))
    assert outcome["volumes"] == saved  # "all": every frame on disk was refocused
