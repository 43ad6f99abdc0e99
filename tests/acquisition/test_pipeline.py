"""The live pipeline: policies, bounded memory, events, stats, overload, faults.

Processors here are stand-ins that sleep (no CPU) and return planes computed from
the frame, so every volume can be traced back to its raw frame. The fake camera
numbers its frames (frame k is filled with k).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, get_args

import numpy as np
import pytest
import tifffile

from deepz_live.acquisition import (
    POLICIES,
    AcquisitionError,
    AcquisitionInterrupted,
    LiveRunError,
    LiveSession,
    LiveState,
    LiveStats,
    OutputLocationError,
    Policy,
    acquire_timelapse,
    default_volume_path,
    equivalent_zstack_dose,
    open_microscope,
    read_frame_metadata,
    read_run_metadata,
    read_volume_metadata,
)

# tests/conftest.py registers itself under this name (config files need a module)
FakeCamera = sys.modules["deepz_test_fakes"].FakeCamera
FakeFocus = sys.modules["deepz_test_fakes"].FakeFocus
fake_scope_cfg_text = sys.modules["deepz_test_fakes"].fake_scope_cfg_text

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from deepz_live.acquisition import FrameProcessor, Microscope

PLANES = (-2.0, 0.0, 2.0)
FAKE_SHAPE = (48, 64)


class SleepProcessor:
    """Takes ``delay_s`` per frame without using the CPU; plane k = frame × (k + 1)."""

    def __init__(
        self,
        delay_s: float = 0.0,
        planes: Sequence[float] = PLANES,
        *,
        fail_at: int | None = None,
        setup_error: Exception | None = None,
        output: str = "ok",
    ) -> None:
        self.delay_s = delay_s
        self._planes = tuple(planes)
        self.fail_at = fail_at
        self.setup_error = setup_error
        self.output = output
        self.calls: list[str] = []
        self.threads: set[str] = set()
        self.setup_args: tuple[Any, ...] = ()
        self.processed = 0

    @property
    def planes_um(self) -> tuple[float, ...]:
        return self._planes

    def setup(self, frame_shape, dtype, metadata) -> None:
        self.threads.add(threading.current_thread().name)
        self.calls.append("setup")
        self.setup_args = (frame_shape, dtype, metadata)
        if self.setup_error is not None:
            raise self.setup_error

    def process(self, frame: np.ndarray) -> np.ndarray:
        self.threads.add(threading.current_thread().name)
        if self.fail_at is not None and self.processed >= self.fail_at:
            raise RuntimeError("GPU fell off the bus")
        self.processed += 1
        time.sleep(self.delay_s)
        if self.output == "2d":
            return frame.astype(np.float32)
        factors = np.arange(1, len(self._planes) + 1, dtype=np.float32)
        return frame.astype(np.float32)[None] * factors[:, None, None]

    def close(self) -> None:
        self.threads.add(threading.current_thread().name)
        self.calls.append("close")

    def describe(self) -> dict[str, Any]:
        return {"kind": "sleep", "delay_s": self.delay_s}


class StallingCamera(FakeCamera):
    """Stops delivering for ``stall_s`` at frame ``stall_at`` (a camera timeout)."""

    stall_at = 4
    stall_s = 1.0

    def snap(self, buffer: np.ndarray):
        if self.frames_taken == self.stall_at:
            time.sleep(self.stall_s)
        return super().snap(buffer)


class ShrinkingCamera(FakeCamera):
    """Frames change size after 3 (as if the ROI or binning changed mid-run)."""

    def sensor_shape(self) -> tuple[int, int]:
        return FAKE_SHAPE if self.frames_taken < 3 else (24, 32)


class FloatCamera(FakeCamera):
    """Frames become float32 after 3 (a pixel type no uint16 file can hold)."""

    def dtype(self) -> Any:
        return np.uint16 if self.frames_taken < 3 else np.float32


class FailingFocus(FakeFocus):
    """The focus drive stops answering after 3 moves."""

    def __init__(self) -> None:
        super().__init__()
        self.moves = 0

    def set_position_um(self, val: float) -> None:
        self.moves += 1
        if self.moves > 3:
            raise RuntimeError("Z drive not responding")
        super().set_position_um(val)


FAKES = "deepz_pipeline_fakes"
sys.modules.setdefault(FAKES, sys.modules[__name__])


@pytest.fixture
def fake_scope(write_cfg):
    """Open a fake scope, optionally with another camera or focus class."""
    opened: list[Microscope] = []

    def _open(camera: str = "FakeCamera", focus: str = "FakeFocus") -> Microscope:
        text = fake_scope_cfg_text()
        if camera != "FakeCamera":
            text = text.replace("deepz_test_fakes,FakeCamera", f"{FAKES},{camera}")
        if focus != "FakeFocus":
            text = text.replace("deepz_test_fakes,FakeFocus", f"{FAKES},{focus}")
        scope = open_microscope(write_cfg(text, f"{camera}-{focus}.cfg"))
        opened.append(scope)
        return scope

    yield _open
    for scope in opened:
        scope.close()


def _session(scope: Microscope, processor: FrameProcessor, tmp_path: Path, **kw):
    kw.setdefault("frames", 10)
    kw.setdefault("exposure_ms", 1)
    return LiveSession(scope, processor, out=tmp_path / "raw.ome.tif", **kw)


def _raw_values(path: Path) -> list[int]:
    return [int(v) for v in tifffile.imread(path).reshape(-1, *FAKE_SHAPE)[:, 0, 0]]


# -- policies ------------------------------------------------------------------------
def test_all_policy_refocuses_every_frame_with_bounded_memory(
    fake_scope, tmp_path: Path
) -> None:
    scope = fake_scope()
    processor = SleepProcessor(delay_s=0.02)
    got: dict[int, np.ndarray] = {}
    events: list[str] = []
    volumes_when_camera_done: list[int] = []
    session = _session(
        scope,
        processor,
        tmp_path,
        frames=30,
        policy="all",
        max_frames_in_memory=3,
        volumes_out=tmp_path / "raw.volumes.ome.tif",
        on_volume=lambda index, volume: got.__setitem__(index, volume),
    )
    session.events.run_started.connect(lambda: events.append("run_started"))
    session.events.acquisition_finished.connect(
        lambda n: (
            events.append("acquisition_finished"),
            volumes_when_camera_done.append(len(got)),
        )
    )
    session.events.run_finished.connect(lambda s: events.append("run_finished"))
    session.start()
    summary = session.wait()

    assert summary.frames == 30
    assert summary.volumes == 30
    assert summary.skipped == 0
    assert sorted(got) == list(range(30))
    for index, volume in got.items():  # each volume made from its own frame
        assert volume.shape == (3, *FAKE_SHAPE)
        assert volume.dtype == np.float32
        np.testing.assert_array_equal(volume[:, 0, 0], [index, 2 * index, 3 * index])
    # memory stayed bounded: the frames that did not fit were read back from disk
    assert summary.peak_frames_in_memory <= 3
    assert summary.frames_read_back >= 20
    assert volumes_when_camera_done[0] < 30  # the worker caught up after the camera
    assert events == ["run_started", "acquisition_finished", "run_finished"]
    assert processor.calls == ["setup", "close"]
    assert processor.threads == {"deepz-refocus"}
    assert processor.setup_args[:2] == (FAKE_SHAPE, np.dtype(np.uint16))
    assert processor.setup_args[2]["version"] == 1

    assert _raw_values(summary.raw_output) == list(range(30))
    assert read_run_metadata(summary.raw_output)["settings"]["policy"] == "all"
    volumes = tifffile.imread(summary.volume_output)
    assert volumes.shape == (30, 3, *FAKE_SHAPE)
    assert list(volumes[:, 1, 0, 0]) == [2 * i for i in range(30)]
    stored = read_volume_metadata(summary.volume_output)
    assert stored["run"]["planes_um"] == list(PLANES)
    assert stored["run"]["processor"] == {"kind": "sleep", "delay_s": 0.02}
    assert [v["frame_index"] for v in stored["volumes"]] == list(range(30))
    with tifffile.TiffFile(summary.volume_output) as tif:
        assert tif.series[0].axes == "TZYX"
        assert 'PhysicalSizeZ="2.0"' in tif.ome_metadata
    final = session.stats()
    assert final.state is LiveState.FINISHED
    assert json.loads(json.dumps(final.to_dict()))["state"] == "finished"
    assert (final.queue_depth, final.frames_in_memory) == (0, 0)


def test_latest_policy_skips_counts_and_keeps_latency_bounded(
    simulator: Microscope, tmp_path: Path
) -> None:
    """An overload (frames every ~13 ms, 40 ms to refocus one): latest vs all."""
    simulator.core.setProperty("Camera", "Clock", "real")
    delay = 0.04
    results = {}
    for policy in POLICIES:
        indices: list[int] = []
        session = LiveSession(
            simulator,
            SleepProcessor(delay_s=delay),
            frames=60,
            exposure_ms=10,
            out=tmp_path / f"{policy}.ome.tif",
            policy=policy,
            max_frames_in_memory=4,
            on_volume=lambda index, volume, got=indices: got.append(index),
        )
        session.start()
        results[policy] = (session.wait(), indices)
        # every raw frame is on disk, whatever the policy
        assert tifffile.imread(tmp_path / f"{policy}.ome.tif").shape == (60, 128, 128)

    latest, latest_indices = results["latest"]
    assert latest.volumes + latest.skipped == 60
    assert latest.skipped >= 20
    assert latest.volumes >= 5
    assert latest_indices == sorted(latest_indices)
    assert latest_indices[-1] == 59  # the newest frame is always the one refocused
    assert latest.peak_frames_in_memory == 1
    # waiting at most one refocus for the slot, then one refocus
    assert latest.latency_p99_ms < 1000 * (2 * delay + 0.15)

    everything, all_indices = results["all"]
    assert everything.volumes == 60
    assert all_indices == list(range(60))
    assert everything.peak_frames_in_memory <= 4
    # first in, first out: the backlog shows in the latency
    assert everything.latency_p99_ms > 1000 * 10 * delay


def test_acquisition_rate_is_the_same_with_the_pipeline_attached(
    simulator: Microscope, tmp_path: Path
) -> None:
    simulator.core.setProperty("Camera", "Clock", "real")
    simulator.focus_on_specimen()
    settings = {"frames": 40, "interval_ms": 0, "exposure_ms": 15}
    alone = acquire_timelapse(simulator, out=tmp_path / "alone.ome.tif", **settings)
    for policy in POLICIES:
        session = LiveSession(
            simulator,
            SleepProcessor(delay_s=0.1),  # ~5 frames per volume: overloaded
            out=tmp_path / f"{policy}.ome.tif",
            policy=policy,
            max_frames_in_memory=4,
            **settings,
        )
        session.start()
        summary = session.wait()
        assert summary.frames == 40
        assert summary.fps == pytest.approx(alone.fps, rel=0.10), policy


def test_iteration_starts_the_run_and_the_context_closes_it(
    fake_scope, tmp_path: Path
) -> None:
    processor = SleepProcessor(delay_s=0.005)
    with _session(fake_scope(), processor, tmp_path, policy="all") as session:
        got = [(index, volume[0, 0, 0]) for index, volume in session]
    assert got == [(i, float(i)) for i in range(10)]
    assert session.done
    assert session.state == "finished"
    assert processor.calls == ["setup", "close"]
    assert not any(t.name.startswith("deepz-") for t in threading.enumerate())


@pytest.mark.parametrize("finish_backlog", [False, True])
def test_stop_from_another_thread(
    simulator: Microscope, tmp_path: Path, finish_backlog: bool
) -> None:
    simulator.core.setProperty("Camera", "Clock", "real")
    session = LiveSession(
        simulator,
        SleepProcessor(delay_s=0.03),
        frames=500,
        exposure_ms=10,
        out=tmp_path / "raw.ome.tif",
        policy="all",
    )

    def stop_after_three_volumes() -> None:  # as a GUI's stop button would
        while session.stats().volumes < 3:
            time.sleep(0.01)
        session.stop(finish_backlog=finish_backlog)

    session.start()
    threading.Thread(target=stop_after_three_volumes).start()
    summary = session.wait(timeout=60)
    assert summary.canceled
    assert 5 <= summary.frames < 500
    assert tifffile.imread(summary.raw_output).shape == (summary.frames, 128, 128)
    assert read_run_metadata(summary.raw_output)["result"]["canceled"] is True
    if finish_backlog:
        assert summary.volumes == summary.frames
    else:
        assert summary.volumes < summary.frames
        assert summary.skipped == summary.frames - summary.volumes
    assert session.state == "stopped"
    assert not simulator.core.mda.is_running()


def test_ctrl_c_while_waiting_stops_cleanly(simulator: Microscope, tmp_path) -> None:
    simulator.core.setProperty("Camera", "Clock", "real")

    def interrupt(stats: LiveStats) -> None:
        if stats.volumes >= 2:
            raise KeyboardInterrupt

    session = LiveSession(
        simulator,
        SleepProcessor(delay_s=0.01),
        frames=1000,
        exposure_ms=10,
        out=tmp_path / "raw.ome.tif",
    )
    session.start()
    with pytest.raises(AcquisitionInterrupted, match="interrupted after") as info:
        session.wait(progress=interrupt)
    saved = info.value.frames_saved
    assert 2 <= saved < 1000
    assert tifffile.imread(tmp_path / "raw.ome.tif").shape == (saved, 128, 128)


def test_slow_frame_listener_drops_notifications_not_frames(
    fake_scope, tmp_path: Path
) -> None:
    """A listener that takes 20 ms per frame: the camera does not wait for it."""
    seen: list[int] = []

    def slow_listener(index: int, frame: np.ndarray) -> None:
        time.sleep(0.02)
        seen.append(index)

    session = _session(fake_scope(), SleepProcessor(), tmp_path, frames=200)
    session.events.frame_acquired.connect(slow_listener)
    camera_done: list[float] = []
    session.events.acquisition_finished.connect(
        lambda n: camera_done.append(time.perf_counter())
    )
    started = time.perf_counter()
    session.start()
    summary = session.wait()
    assert summary.frames == 200
    assert _raw_values(summary.raw_output) == list(range(200))
    stats = session.stats()
    assert stats.frame_events_dropped > 0
    assert len(seen) + stats.frame_events_dropped == 200
    assert seen == sorted(seen)
    # 200 listener calls would take 4 s; the camera finished long before
    assert camera_done[0] - started < 2.0


def test_a_listener_that_raises_is_logged_and_the_run_goes_on(
    fake_scope, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    session = _session(fake_scope(), SleepProcessor(), tmp_path, policy="all")

    def broken(index: int, volume: np.ndarray) -> None:
        raise ValueError("bug in a user callback")

    session.events.volume_ready.connect(broken)
    with caplog.at_level(logging.ERROR):
        session.start()
        summary = session.wait()
    assert summary.volumes == 10
    assert "volume_ready" in caplog.text


def test_stats_snapshot_while_running(simulator: Microscope, tmp_path: Path) -> None:
    simulator.core.setProperty("Camera", "Clock", "real")
    simulator.core.setProperty("LED", "Intensity", "50")
    updates: list[LiveStats] = []
    session = LiveSession(
        simulator,
        SleepProcessor(delay_s=0.05),
        frames=40,
        exposure_ms=10,
        out=tmp_path / "raw.ome.tif",
        policy="all",
    )
    session.events.stats_updated.connect(updates.append)
    session.start()
    summary = session.wait()
    assert len(updates) >= 3
    running = [s for s in updates if s.state in ("acquiring", "catching_up")]
    assert running
    assert max(s.queue_depth for s in updates) > 0
    assert any(s.frames_per_s for s in running)
    last = updates[-1]
    assert last == session.stats()
    assert last.frames_acquired == last.volumes == 40
    assert 50 <= last.frames_per_s <= 100  # 10 ms exposures
    # dose = irradiance × exposure: 50 % of 1 W/cm² for 10 ms
    assert last.dose_per_frame_J_cm2 == pytest.approx(0.5 * 0.01)
    assert last.dose_total_J_cm2 == pytest.approx(40 * 0.5 * 0.01)
    assert summary.dose_total_J_cm2 == pytest.approx(last.dose_total_J_cm2)
    # compared with scanning the same volumes: one exposure per plane
    assert summary.zstack_planes == len(PLANES)
    assert summary.equivalent_zstack_dose_J_cm2 == pytest.approx(
        len(PLANES) * 40 * 0.005
    )
    assert last.equivalent_zstack_dose_J_cm2 == pytest.approx(len(PLANES) * 40 * 0.005)
    assert summary.latency_p50_ms >= 50


# -- refusals before any frame -------------------------------------------------------
def test_refusals_before_any_frame(fake_scope, hold_camera, tmp_path: Path) -> None:
    scope = fake_scope()
    camera = hold_camera(scope)
    with pytest.raises(AcquisitionError, match="policy must be"):
        _session(scope, SleepProcessor(), tmp_path, policy="some")
    with pytest.raises(TypeError, match="not a FrameProcessor"):
        _session(scope, object(), tmp_path)  # type: ignore[arg-type]
    with pytest.raises(AcquisitionError, match="frames must be at least 1"):
        _session(scope, SleepProcessor(), tmp_path, frames=0).start()
    with pytest.raises(AcquisitionError, match="planes_um: choose at least one plane"):
        _session(scope, SleepProcessor(planes=()), tmp_path).start()
    raw = tmp_path / "raw.ome.tif"
    with pytest.raises(OutputLocationError, match="raw output too"):
        _session(scope, SleepProcessor(), tmp_path, volumes_out=raw).start()
    (tmp_path / "v.ome.tif").write_bytes(b"keep")
    with pytest.raises(OutputLocationError, match="already exists"):
        taken = tmp_path / "v.ome.tif"
        _session(scope, SleepProcessor(), tmp_path, volumes_out=taken).start()
    assert camera.frames_taken == 0
    assert not raw.exists()
    assert (tmp_path / "v.ome.tif").read_bytes() == b"keep"


def test_a_processor_that_cannot_start_costs_no_light(
    fake_scope, hold_camera, tmp_path: Path
) -> None:
    """E.g. a model trained at another pixel size: the camera never starts."""
    scope = fake_scope()
    camera = hold_camera(scope)
    processor = SleepProcessor(setup_error=ValueError("pixel size 1.3 µm ≠ 0.325 µm"))
    failures: list[str] = []
    session = _session(scope, processor, tmp_path)
    session.events.run_failed.connect(failures.append)
    session.start()
    with pytest.raises(LiveRunError, match=r"could not start.*0\.325 µm.*no frame"):
        session.wait()
    assert failures == [session.summary.error]
    assert camera.frames_taken == 0
    assert not (tmp_path / "raw.ome.tif").exists()
    assert processor.calls == ["setup"]


def test_states_and_policies_are_single_lists_of_plain_strings() -> None:
    assert POLICIES == get_args(Policy) == ("latest", "all")
    assert [str(state) for state in LiveState] == [
        "idle",
        "starting",
        "acquiring",
        "catching_up",
        "finished",
        "stopped",
        "failed",
    ]
    state = LiveState.CATCHING_UP
    assert state == "catching_up" and f"{state}" == "catching_up"
    assert json.dumps({"state": state}) == '{"state": "catching_up"}'
    assert equivalent_zstack_dose(0.25, 21) == pytest.approx(5.25)
    assert equivalent_zstack_dose(None, 21) is None


def test_default_volume_path() -> None:
    assert default_volume_path("a/worm.ome.tif").as_posix() == "a/worm.volumes.ome.tif"
    assert default_volume_path("w.ome.zarr").name == "w.volumes.ome.zarr"
    assert default_volume_path("w.tif").name == "w.volumes.tif"


# -- faults mid-run ------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("interval_ms", [0, 1])
def test_camera_error_mid_run(
    fake_scope, hold_camera, tmp_path: Path, interval_ms: float
) -> None:
    scope = fake_scope()
    hold_camera(scope).fail_at = 5
    failures: list[str] = []
    session = _session(
        scope,
        SleepProcessor(delay_s=0.01),
        tmp_path,
        frames=20,
        interval_ms=interval_ms,
        policy="all",
        max_frames_in_memory=2,
        volumes_out=tmp_path / "v.ome.tif",
    )
    session.events.run_failed.connect(failures.append)
    session.start()
    with pytest.raises(LiveRunError) as info:
        session.wait()
    message = str(info.value)
    assert "5 of 20 frames" in message
    if interval_ms:  # snapped frames: the camera's own error is passed on
        assert "camera lost connection" in message
    assert f"5 frames acquired are saved in {tmp_path / 'raw.ome.tif'}" in message
    assert "5 volumes in" in message
    assert failures == [message]
    # everything acquired is on disk, closed properly, and was refocused
    assert _raw_values(tmp_path / "raw.ome.tif") == [0, 1, 2, 3, 4]
    assert len(read_frame_metadata(tmp_path / "raw.ome.tif")) == 5
    assert tifffile.imread(tmp_path / "v.ome.tif").shape == (5, 3, *FAKE_SHAPE)
    assert info.value.summary.volumes == 5
    assert session.state == "failed"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_camera_timeout_mid_run(fake_scope, tmp_path: Path) -> None:
    scope = fake_scope(camera="StallingCamera")
    scope.core.mda.engine.timeout_base = 0.3  # s without a frame: timed out
    session = _session(scope, SleepProcessor(), tmp_path, frames=20, policy="all")
    session.start()
    with pytest.raises(LiveRunError, match=r"4 of 20 frames.*stopped delivering"):
        session.wait(timeout=30)
    assert _raw_values(tmp_path / "raw.ome.tif") == [0, 1, 2, 3]
    assert session.summary.volumes == 4


def test_stage_error_mid_run(fake_scope, tmp_path: Path) -> None:
    scope = fake_scope(focus="FailingFocus")
    session = _session(
        scope, SleepProcessor(), tmp_path, frames=10, interval_ms=1, policy="all"
    )
    session.start()
    with pytest.raises(
        LiveRunError, match=r"Focus device 'Z' failed to move.*not responding"
    ) as info:
        session.wait()
    # the run holds the focus with one move per frame; the 4th move failed
    assert "3 of 10 frames" in str(info.value)
    assert _raw_values(tmp_path / "raw.ome.tif") == [0, 1, 2]
    assert info.value.summary.volumes == 3


@pytest.mark.parametrize(
    ("camera", "message"),
    [
        ("ShrinkingCamera", r"frame 3 is 24×32 uint16, but this run records 48×64"),
        ("FloatCamera", r"frame 3 is float32.*uint16 frames.*bit depth"),
    ],
)
def test_frame_of_unexpected_shape_or_dtype(
    fake_scope, tmp_path: Path, camera: str, message: str
) -> None:
    scope = fake_scope(camera=camera)
    session = _session(scope, SleepProcessor(), tmp_path, interval_ms=1, policy="all")
    session.start()
    with pytest.raises(LiveRunError, match=message):
        session.wait()
    assert _raw_values(tmp_path / "raw.ome.tif") == [0, 1, 2]
    assert read_run_metadata(tmp_path / "raw.ome.tif")["kind"] == "live"
    assert session.summary.volumes == 3


@pytest.mark.parametrize(
    ("processor", "message"),
    [
        (SleepProcessor(fail_at=3), r"failed on frame 3 \(RuntimeError: GPU fell off"),
        (SleepProcessor(output="2d"), r"processor returned a float32 array of shape"),
    ],
)
def test_processor_error_stops_the_run(
    simulator: Microscope, tmp_path: Path, processor: SleepProcessor, message: str
) -> None:
    simulator.core.setProperty("Camera", "Clock", "real")
    session = LiveSession(
        simulator, processor, frames=500, exposure_ms=10, out=tmp_path / "r.ome.tif"
    )
    session.start()
    with pytest.raises(LiveRunError, match=message) as info:
        session.wait(timeout=60)
    assert "acquisition was stopped" in str(info.value)
    saved = info.value.summary.frames
    assert 1 <= saved < 500
    assert tifffile.imread(tmp_path / "r.ome.tif").shape[0] == saved
    # the raw file records a result only for runs that did not fail
    assert "result" not in read_run_metadata(tmp_path / "r.ome.tif")
    assert not simulator.core.mda.is_running()


def test_volume_file_that_cannot_be_written_stops_the_run(
    fake_scope, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from deepz_live.acquisition import OmeTiffVolumeWriter

    real_write = OmeTiffVolumeWriter._write

    def full_after_two(self, volume, meta):
        if self.volumes_written >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, volume, meta)

    monkeypatch.setattr(OmeTiffVolumeWriter, "_write", full_after_two)
    session = _session(
        fake_scope(),
        SleepProcessor(delay_s=0.01),
        tmp_path,
        frames=50,
        interval_ms=5,
        volumes_out=tmp_path / "v.ome.tif",
        policy="all",
    )
    session.start()
    with pytest.raises(LiveRunError, match=r"Writing volume 2 .*No space left"):
        session.wait()
    frames = session.summary.frames
    assert frames < 50
    assert _raw_values(tmp_path / "raw.ome.tif") == list(range(frames))
    assert tifffile.imread(tmp_path / "v.ome.tif").shape == (2, 3, *FAKE_SHAPE)
