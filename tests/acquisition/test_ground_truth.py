"""Ground truth beside simulated z-stacks: the noise-free twin and the objects table."""

from __future__ import annotations

import csv
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

from deepz_live.acquisition import (
    AcquisitionError,
    Microscope,
    OutputLocationError,
    acquire_zstack,
    ground_truth_paths,
    open_microscope,
)

if TYPE_CHECKING:
    from pathlib import Path


def test_zstack_ground_truth_matches_the_recorded_planes(
    simulator: Microscope, tmp_path: Path
) -> None:
    from deepz_live.inference import read_stacks

    core = simulator.core
    core.setProperty("Specimen", "Kind", "single-bead")
    core.setProperty("Specimen", "Depth", "6")
    simulator.focus_on_specimen()
    out = tmp_path / "bead.ome.tif"
    summary = acquire_zstack(
        simulator, range_um=6, step_um=0.5, exposure_ms=20, out=out,
        led_intensity=60, ground_truth=True,
    )  # fmt: skip
    clean_path, objects_path = ground_truth_paths(out)
    assert summary.clean_output == clean_path
    assert summary.to_dict()["objects_output"] == str(objects_path)

    recorded = tifffile.imread(out).astype(np.float64)
    clean = tifffile.imread(clean_path)
    assert clean.shape == recorded.shape and clean.dtype == np.float32
    # the recording is the twin plus zero-mean noise: the same light in total, and
    # the residual's variance is the camera's shot noise (gain × signal) + read noise
    gain = float(core.getProperty("Camera", "Gain"))
    offset = float(core.getProperty("Camera", "Offset"))
    read_adu = 4 * float(core.getProperty("Camera", "ReadNoise_e")) * gain  # 4x4 bin
    lit = clean > offset + 20
    assert (recorded[lit] - offset).sum() / (clean[lit] - offset).sum() == (
        pytest.approx(1.0, abs=0.01)
    )
    expected = gain * (clean[lit] - offset) + read_adu**2 + 1 / 12
    chi2 = ((recorded[lit] - clean[lit]) ** 2 / expected).mean()
    assert chi2 == pytest.approx(1.0, abs=0.1)

    with objects_path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1
    bead = rows[0]
    # the table's in-focus z is where the twin's bead is brightest
    z_planes = read_stacks(out)[0].z_um
    brightest = z_planes[int(np.argmax(clean.max(axis=(1, 2))))]
    assert float(bead["focus_z_um"]) == pytest.approx(brightest, abs=0.5)
    # depth below the coverslip is larger than the focus travel (air into water)
    assert float(bead["depth_um"]) == pytest.approx(6.0)
    assert float(bead["focus_z_um"]) < 6.0
    # and its pixel position is where the in-focus twin peaks
    peak = np.unravel_index(np.argmax(clean.max(axis=0)), clean.shape[1:])
    assert float(bead["y_px"]) == pytest.approx(peak[0], abs=1.0)
    assert float(bead["x_px"]) == pytest.approx(peak[1], abs=1.0)

    stack = read_stacks(out)[0]
    assert stack.has_ground_truth
    assert np.array_equal(stack.clean, clean)
    assert stack.objects.shape == (1, 3)


def test_ground_truth_needs_the_simulator(fake_scope_cfg: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.ome.tif"
    with open_microscope(fake_scope_cfg) as scope:
        with pytest.raises(AcquisitionError, match="only on the simulated"):
            acquire_zstack(
                scope, range_um=2, step_um=1, exposure_ms=1, out=out,
                ground_truth=True,
            )  # fmt: skip
    assert not out.exists()  # refused before the first frame


def test_an_earlier_recordings_ground_truth_never_pairs_with_a_new_stack(
    simulator: Microscope, tmp_path: Path
) -> None:
    simulator.focus_on_specimen()
    out = tmp_path / "s.ome.tif"
    acquire_zstack(simulator, range_um=1, step_um=1, exposure_ms=1, out=out,
                   ground_truth=True)  # fmt: skip
    clean, objects = ground_truth_paths(out)
    out.unlink()  # the stack is gone, its ground truth is still there
    with pytest.raises(OutputLocationError, match="ground truth of an earlier"):
        acquire_zstack(simulator, range_um=1, step_um=1, exposure_ms=1, out=out)
    # replacing the recording without ground truth removes the old one
    acquire_zstack(simulator, range_um=1, step_um=1, exposure_ms=1, out=out,
                   overwrite=True)  # fmt: skip
    assert out.exists() and not clean.exists() and not objects.exists()
