"""Scripted time-lapses and z-stacks: files, dose physics, refusals, failures."""

from __future__ import annotations

import errno
import shutil
import sys
from collections import namedtuple
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

from deepz_live.acquisition import (
    AcquisitionError,
    AcquisitionInterrupted,
    Microscope,
    OmeTiffWriter,
    OutputLocationError,
    acquire_timelapse,
    acquire_zstack,
    open_microscope,
    read_frame_metadata,
    read_run_metadata,
)

if TYPE_CHECKING:
    from pathlib import Path

BINNED_PIXEL_UM = 0.325 * 4  # the simulator fixture bins 4×4


def _led_on_time_ms(scope: Microscope) -> float:
    """Total time the simulator's LED has lit the sample: 0 until a frame is taken."""
    return float(scope.core.getProperty("LED", "CumulativeOnTime_ms"))


# -- time-lapse ----------------------------------------------------------------------
def test_timelapse_file_and_dose_summary(simulator: Microscope, tmp_path: Path) -> None:
    simulator.focus_on_specimen()
    out = tmp_path / "movie.ome.tif"
    summary = acquire_timelapse(
        simulator, frames=8, interval_ms=0, exposure_ms=5, out=out, led_intensity=50
    )

    data = tifffile.imread(out)
    assert data.shape == (8, 128, 128)
    assert data.dtype == np.uint16
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == "TYX"
        assert f'PhysicalSizeX="{BINNED_PIXEL_UM}"' in tif.ome_metadata

    # dose = irradiance × exposure: 50 % of 1 W/cm² for 5 ms = 2.5 mJ/cm² per frame
    irradiance = 0.5 * float(simulator.core.getProperty("LED", "MaxIrradiance_W_cm2"))
    per_frame = irradiance * 0.005
    assert summary.frames == 8
    assert summary.output == out
    assert summary.dose_per_frame_J_cm2 == pytest.approx(per_frame)
    assert summary.dose_total_J_cm2 == pytest.approx(8 * per_frame)
    assert summary.equivalent_zstack_dose_J_cm2 == pytest.approx(21 * 8 * per_frame)
    # simulated clock: frames are back to back, one exposure apart
    assert summary.fps == pytest.approx(200.0)

    frames = read_frame_metadata(out)
    assert len(frames) == 8
    assert [f["dose_J_cm2"] for f in frames] == pytest.approx([per_frame] * 8)
    cumulative = [f["cumulative_dose_J_cm2"] for f in frames]
    assert np.diff(cumulative) == pytest.approx([per_frame] * 7)
    assert all(f["z_um"] == pytest.approx(frames[0]["z_um"]) for f in frames)

    run = read_run_metadata(out)
    assert run["kind"] == "timelapse"
    assert run["settings"]["frames"] == 8
    assert run["settings"]["led_intensity"] == 50
    assert float(run["devices"]["Optics"]["NA"]) == pytest.approx(0.75)
    assert run["result"]["dose_total_J_cm2"] == pytest.approx(8 * per_frame)
    assert run["mda_sequence"]["time_plan"]["loops"] == 8
    # the JSON form rounds away float noise (4 significant digits for fps)
    summary_json = summary.to_dict()
    assert summary_json.pop("output") == str(out)
    assert summary_json == pytest.approx(
        {
            "frames": 8,
            "fps": summary.fps,
            "dose_per_frame_J_cm2": summary.dose_per_frame_J_cm2,
            "dose_total_J_cm2": summary.dose_total_J_cm2,
            "equivalent_zstack_dose_J_cm2": summary.equivalent_zstack_dose_J_cm2,
        },
        rel=1e-3,
    )


def test_timelapse_with_interval_takes_single_snaps(
    simulator: Microscope, tmp_path: Path
) -> None:
    out = tmp_path / "slow.ome.tif"
    summary = acquire_timelapse(
        simulator, frames=3, interval_ms=30, exposure_ms=2, out=out
    )
    assert tifffile.imread(out).shape == (3, 128, 128)
    assert summary.dose_total_J_cm2 is not None  # metadata of snapped frames too
    assert len({f["frame_index"] for f in read_frame_metadata(out)}) == 3


def test_camera_without_dose_reports_none(fake_scope_cfg: Path, tmp_path: Path) -> None:
    with open_microscope(fake_scope_cfg) as scope:
        summary = acquire_timelapse(
            scope, frames=4, interval_ms=0, exposure_ms=1, out=tmp_path / "a.ome.tif"
        )
    assert summary.frames == 4
    assert summary.dose_total_J_cm2 is None
    assert summary.dose_per_frame_J_cm2 is None
    assert summary.equivalent_zstack_dose_J_cm2 is None
    data = tifffile.imread(summary.output)
    assert list(data[:, 0, 0]) == [0, 1, 2, 3]  # the fake camera numbers its frames


# -- z-stack -------------------------------------------------------------------------
def test_zstack_planes_voxels_and_focus_return(
    simulator: Microscope, tmp_path: Path
) -> None:
    z0 = simulator.move_focus(20.0)
    out = tmp_path / "stack.ome.tif"
    summary = acquire_zstack(simulator, range_um=2, step_um=1, exposure_ms=2, out=out)

    assert summary.shape == [3, 128, 128]
    assert summary.voxel_um == pytest.approx([1.0, BINNED_PIXEL_UM, BINNED_PIXEL_UM])
    assert tifffile.imread(out).shape == (3, 128, 128)
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == "ZYX"
        assert 'PhysicalSizeZ="1.0"' in tif.ome_metadata
    z_planes = [f["z_um"] for f in read_frame_metadata(out)]
    assert z_planes == pytest.approx([19, 20, 21])
    assert simulator.core.getPosition("Z") == pytest.approx(z0)
    assert summary.to_dict() == {
        "output": str(out),
        "shape": [3, 128, 128],
        "voxel_um": summary.voxel_um,
    }


def test_zstack_refuses_planes_outside_stage_travel(
    simulator: Microscope, tmp_path: Path
) -> None:
    simulator.move_focus(245.0)  # the simulator's Z stops at 250 µm
    out = tmp_path / "stack.ome.tif"
    with pytest.raises(AcquisitionError, match=r"outside the travel.*-50 to 250"):
        acquire_zstack(simulator, range_um=20, step_um=1, exposure_ms=2, out=out)
    assert not out.exists()
    assert _led_on_time_ms(simulator) == 0


# -- validation before acquiring ----------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exposure_ms": 0}, "exposure must be more than 0"),
        ({"exposure_ms": -5}, "exposure must be more than 0"),
        ({"exposure_ms": 700_000}, "longer than 10 minutes"),
        ({"frames": 0}, "at least 1"),
        ({"interval_ms": -1}, "interval"),
    ],
)
def test_timelapse_rejects_bad_settings(
    fake_scope_cfg: Path, tmp_path: Path, hold_camera, kwargs: dict, message: str
) -> None:
    settings = {"frames": 3, "interval_ms": 0, "exposure_ms": 1} | kwargs
    out = tmp_path / "x.ome.tif"
    with open_microscope(fake_scope_cfg) as scope:
        camera = hold_camera(scope)
        with pytest.raises(AcquisitionError, match=message):
            acquire_timelapse(scope, out=out, **settings)
        assert camera.frames_taken == 0
    assert not out.exists()


@pytest.mark.parametrize(
    ("range_um", "step_um", "message"),
    [
        (0, 1, "range must be more than 0"),
        (-4, 1, "range must be more than 0"),
        (4, 0, "step must be more than 0"),
        (4, 5, "larger than the range"),
    ],
)
def test_zstack_rejects_bad_geometry(
    fake_scope_cfg: Path, tmp_path: Path, range_um: float, step_um: float, message: str
) -> None:
    with open_microscope(fake_scope_cfg) as scope:
        with pytest.raises(AcquisitionError, match=message):
            acquire_zstack(
                scope,
                range_um=range_um,
                step_um=step_um,
                exposure_ms=1,
                out=tmp_path / "z.ome.tif",
            )


def test_existing_output_is_kept_unless_overwrite(
    fake_scope_cfg: Path, tmp_path: Path
) -> None:
    out = tmp_path / "taken.ome.tif"
    out.write_bytes(b"yesterday's data")
    with open_microscope(fake_scope_cfg) as scope:
        with pytest.raises(OutputLocationError, match="already exists"):
            acquire_timelapse(scope, frames=2, interval_ms=0, exposure_ms=1, out=out)
        assert out.read_bytes() == b"yesterday's data"
        acquire_timelapse(
            scope, frames=2, interval_ms=0, exposure_ms=1, out=out, overwrite=True
        )
    assert tifffile.imread(out).shape == (2, 48, 64)


def test_missing_output_folders_are_created(
    fake_scope_cfg: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs" / "today" / "a.ome.tif"
    with open_microscope(fake_scope_cfg) as scope:
        acquire_timelapse(scope, frames=1, interval_ms=0, exposure_ms=1, out=out)
    assert tifffile.imread(out).shape == (48, 64)


def test_output_folder_that_cannot_exist(
    fake_scope_cfg: Path, tmp_path: Path, hold_camera
) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    with open_microscope(fake_scope_cfg) as scope:
        camera = hold_camera(scope)
        with pytest.raises(OutputLocationError, match="Cannot create output folder"):
            acquire_timelapse(
                scope, frames=1, interval_ms=0, exposure_ms=1, out=blocker / "a.tif"
            )
        assert camera.frames_taken == 0


def test_not_enough_disk_space_is_refused_before_any_frame(
    fake_scope_cfg: Path,
    tmp_path: Path,
    hold_camera,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    usage = namedtuple("usage", "total used free")
    frame_bytes = 48 * 64 * 2
    # room for 100 frames, not for 100 frames plus the 5 % margin
    monkeypatch.setattr(
        shutil, "disk_usage", lambda _: usage(10**9, 10**9, 100 * frame_bytes)
    )
    out = tmp_path / "big.ome.tif"
    with open_microscope(fake_scope_cfg) as scope:
        camera = hold_camera(scope)
        with pytest.raises(OutputLocationError, match="Not enough free disk space"):
            acquire_timelapse(scope, frames=100, interval_ms=0, exposure_ms=1, out=out)
        assert camera.frames_taken == 0
        assert not out.exists()
        summary = acquire_timelapse(
            scope, frames=90, interval_ms=0, exposure_ms=1, out=out
        )
    assert summary.frames == 90


# -- interruption and failures ------------------------------------------------------
def test_ctrl_c_keeps_the_frames_so_far(simulator: Microscope, tmp_path: Path) -> None:
    simulator.core.setProperty("Camera", "Clock", "real")  # 20 ms frames, 4 s run

    def interrupt_after_three(done: int, total: int) -> None:
        if done >= 3:
            raise KeyboardInterrupt

    out = tmp_path / "interrupted.ome.tif"
    with pytest.raises(AcquisitionInterrupted) as info:
        acquire_timelapse(
            simulator,
            frames=200,
            interval_ms=0,
            exposure_ms=20,
            out=out,
            progress=interrupt_after_three,
        )
    saved = info.value.frames_saved
    assert 3 <= saved < 200
    assert info.value.output == out
    assert f"after {saved} of 200 frames" in str(info.value)
    assert str(out) in str(info.value)
    assert tifffile.imread(out).shape == (saved, 128, 128)
    assert len(read_frame_metadata(out)) == saved
    assert read_run_metadata(out)["kind"] == "timelapse"
    assert "result" not in read_run_metadata(out)  # only runs that ended normally
    # the runner finished properly: the scope takes the next run
    assert not simulator.core.isSequenceRunning()
    assert not simulator.core.mda.is_running()
    acquire_timelapse(
        simulator, frames=2, interval_ms=0, exposure_ms=1, out=tmp_path / "next.tif"
    )


def test_cancel_returns_a_partial_summary(
    simulator: Microscope, tmp_path: Path
) -> None:
    simulator.core.setProperty("Camera", "Clock", "real")

    def cancel_after_two(done: int, total: int) -> None:
        if done >= 2:
            simulator.core.mda.cancel()

    out = tmp_path / "canceled.ome.tif"
    summary = acquire_timelapse(
        simulator,
        frames=200,
        interval_ms=0,
        exposure_ms=20,
        out=out,
        progress=cancel_after_two,
    )
    assert summary.canceled
    assert 2 <= summary.frames < 200
    assert tifffile.imread(out).shape == (summary.frames, 128, 128)
    assert read_run_metadata(out)["result"]["canceled"] is True


def test_camera_failure_mid_stack_closes_the_file_first(
    fake_scope_cfg: Path, tmp_path: Path, hold_camera
) -> None:
    out = tmp_path / "failed.ome.tif"
    with open_microscope(fake_scope_cfg) as scope:
        hold_camera(scope).fail_at = 3
        with pytest.raises(AcquisitionError, match="after 3 of 5 frames") as info:
            acquire_zstack(scope, range_um=4, step_um=1, exposure_ms=1, out=out)
        assert "camera lost connection" in str(info.value)
        assert scope.core.getPosition("Z") == pytest.approx(0.0)  # focus restored
    data = tifffile.imread(out)
    assert list(data[:, 0, 0]) == [0, 1, 2]
    assert [f["z_um"] for f in read_frame_metadata(out)] == [-2.0, -1.0, 0.0]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_camera_failure_mid_stream_is_an_error(
    fake_scope_cfg: Path, tmp_path: Path, hold_camera
) -> None:
    out = tmp_path / "stream.ome.tif"
    with open_microscope(fake_scope_cfg) as scope:
        hold_camera(scope).fail_at = 4
        with pytest.raises(AcquisitionError, match="only 4 of 10 frames"):
            acquire_timelapse(scope, frames=10, interval_ms=0, exposure_ms=1, out=out)
    assert tifffile.imread(out).shape == (4, 48, 64)


class ShrinkingCamera(sys.modules["deepz_test_fakes"].FakeCamera):
    """Frames change size after 3 (as if the ROI or binning changed mid-run)."""

    def sensor_shape(self) -> tuple[int, int]:
        return (48, 64) if self.frames_taken < 3 else (24, 32)


def test_frame_of_another_size_stops_a_zstack(
    fake_scope_cfg: Path, tmp_path: Path, hold_camera
) -> None:
    """The live session's frame check: time-lapses and z-stacks share its loop."""
    out = tmp_path / "stack.ome.tif"
    with open_microscope(fake_scope_cfg) as scope:
        hold_camera(scope, ShrinkingCamera())
        with pytest.raises(AcquisitionError) as info:
            acquire_zstack(scope, range_um=4, step_um=1, exposure_ms=1, out=out)
    assert str(info.value) == (
        "Acquisition stopped: frame 3 is 24×32 uint16, but this run records 48×64 "
        "uint16 frames: the camera's ROI or binning changed during the run, or the "
        f"camera delivered a corrupt frame; the 3 frames acquired are saved in {out}."
    )
    assert list(tifffile.imread(out)[:, 0, 0]) == [0, 1, 2]
    assert "result" not in read_run_metadata(out)


def test_full_disk_mid_timelapse_names_the_cause(
    fake_scope_cfg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = OmeTiffWriter._write

    def full_after_three(self, frame, meta):
        if self.frames_written >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, frame, meta)

    monkeypatch.setattr(OmeTiffWriter, "_write", full_after_three)
    out = tmp_path / "full.ome.tif"
    with open_microscope(fake_scope_cfg) as scope:
        with pytest.raises(AcquisitionError) as info:
            acquire_timelapse(scope, frames=10, interval_ms=0, exposure_ms=1, out=out)
        assert not scope.core.mda.is_running()
    assert str(info.value) == (
        f"Writing raw frame 3 to {out} failed (the disk is full); acquisition was "
        "stopped. Free some space or write elsewhere; the 3 frames acquired are "
        f"saved in {out}."
    )
    assert list(tifffile.imread(out)[:, 0, 0]) == [0, 1, 2]
