"""The simulator through Micro-Manager: light, dose, ground truth, specimens."""

from __future__ import annotations

import numpy as np
import pytest
import useq

from deepz_live.acquisition import SIMULATOR_CONFIG, DeepzCore
from deepz_live.acquisition.simulator import bench_for


def _snap(core) -> np.ndarray:
    core.snapImage()
    return core.getImage().astype(float)


def test_labels_defaults_and_pixel_size(sim_core) -> None:
    assert {"Camera", "Z", "LED", "Optics", "Specimen"} <= set(
        sim_core.getLoadedDevices()
    )
    assert sim_core.getCameraDevice() == "Camera"
    assert sim_core.getFocusDevice() == "Z"
    assert float(sim_core.getProperty("Optics", "NA")) == 0.75
    assert float(sim_core.getProperty("Optics", "Magnification")) == 20
    assert float(sim_core.getProperty("Optics", "SampleIndex")) == 1.33
    assert sim_core.getImageWidth() == sim_core.getImageHeight() == 512
    assert sim_core.getPixelSizeUm() == pytest.approx(0.325)
    sim_core.setProperty("Camera", "Binning", 2)
    assert sim_core.getImageWidth() == 256
    assert sim_core.getPixelSizeUm() == pytest.approx(0.65)


def test_autoshutter_lights_the_led_only_for_the_exposure(sim_core, bench) -> None:
    sim_core.setPosition(float(sim_core.getProperty("Specimen", "FocusZ")))
    lit = _snap(sim_core)
    assert not sim_core.getShutterOpen()  # closed again after the snap
    assert bench.camera.last_frame_metadata["dose_J_cm2"] > 0
    sim_core.setAutoShutter(False)
    dark = _snap(sim_core)
    assert bench.camera.last_frame_metadata["dose_J_cm2"] == 0
    assert dark.mean() == pytest.approx(100, abs=1)  # offset only
    assert lit.max() > dark.max() + 200


def test_dose_ledger_sums(sim_core, bench) -> None:
    sim_core.setExposure(20)
    sim_core.setProperty("LED", "Intensity", 50)
    sim_core.setProperty("LED", "MaxIrradiance_W_cm2", 0.4)
    per_frame = 0.2 * 0.020  # W/cm² × s
    doses = []
    for _ in range(5):
        sim_core.snapImage()
        meta = bench.camera.last_frame_metadata
        assert meta["irradiance_W_cm2"] == pytest.approx(0.2)
        assert meta["led_on_ms"] == 20
        doses.append(meta["dose_J_cm2"])
    assert doses == pytest.approx([per_frame] * 5)
    assert meta["cumulative_dose_J_cm2"] == pytest.approx(5 * per_frame)
    assert float(sim_core.getProperty("LED", "CumulativeDose_J_cm2")) == pytest.approx(
        5 * per_frame
    )
    assert float(
        sim_core.getProperty("Specimen", "ReceivedDose_J_cm2")
    ) == pytest.approx(5 * per_frame)


def test_photobleaching_follows_cumulative_dose(sim_core, bench) -> None:
    sim_core.setProperty("Specimen", "Kind", "beads")
    sim_core.setProperty("Specimen", "BleachRate_cm2_per_J", 5.0)
    sim_core.setProperty("LED", "Intensity", 100)
    sim_core.setExposure(100)  # 0.1 J/cm² per frame
    before = bench.clean_photons().sum()
    for _ in range(4):
        sim_core.snapImage()
    after = bench.clean_photons().sum()
    assert after / before == pytest.approx(np.exp(-5.0 * 0.4), rel=1e-6)


def test_mean_of_frames_matches_ground_truth(sim_core, bench) -> None:
    """Averaged noisy frames converge on the noise-free image, pixel by pixel."""
    sim_core.setProperty("Specimen", "Kind", "beads")
    sim_core.setProperty("Specimen", "BleachRate_cm2_per_J", 0.0)
    sim_core.setPosition(float(sim_core.getProperty("Specimen", "FocusZ")))
    truth = bench.clean_image_adu()
    n = 32
    stack = np.stack([_snap(sim_core) for _ in range(n)])
    var = bench.camera.noise.expected_variance_adu(bench.clean_photons(), 0.01)
    z = (stack.mean(axis=0) - truth) / np.sqrt(var / n)
    assert abs(z.mean()) < 0.05
    assert z.std() == pytest.approx(1.0, abs=0.05)
    # per-pixel temporal variance follows the noise model too
    ratio = stack.var(axis=0, ddof=1).mean() / var.mean()
    assert ratio == pytest.approx(1.0, abs=0.05)


def test_stage_limits_are_enforced(sim_core) -> None:
    assert float(sim_core.getProperty("Z", "UpperLimit")) == 250
    with pytest.raises(Exception, match="outside the focus drive's range"):
        sim_core.setPosition(400.0)
    sim_core.setPosition(12.5)
    assert sim_core.getPosition() == pytest.approx(12.5)


def test_worm_geometry_and_activity_ground_truth(sim_core, bench) -> None:
    pos = bench.neuron_positions_um()
    assert pos.shape[0] >= 150
    depth = pos[:, 2]
    centre = float(sim_core.getProperty("Specimen", "Depth"))
    assert depth.min() < centre - 8 and depth.max() > centre + 8
    assert np.all(np.abs(depth - centre) <= 11.5)
    t = np.arange(0, 60, 0.01)
    dff = bench.dff(t)
    assert dff.shape == (t.size, pos.shape[0])
    assert dff.min() >= -1e-9 and dff.max() > 1.0
    # low-dimensional: a few components carry most of the population variance
    centred = dff - dff.mean(axis=0)
    sv = np.linalg.svd(centred[::10], compute_uv=False) ** 2
    assert sv[:3].sum() / sv.sum() > 0.35


def test_calcium_transient_kinetics() -> None:
    """One event peaks at ln(τd/τr)·τdτr/(τd−τr) ≈ 0.2 s, then decays with τ 0.5 s."""
    from deepz_live.acquisition.simulator import CalciumActivity

    act = CalciumActivity(1, seed=0, max_rate_hz=0.0)
    act.dff(np.array([1.0]))  # fills the first chunk with zeros
    impulse = np.zeros((2000, 1))
    impulse[0] = 1.0
    from scipy import signal

    a_r, a_d = np.exp(-act.dt_s / act.rise_s), np.exp(-act.dt_s / act.decay_s)
    trace = (
        signal.lfilter([1], [1, -a_d], impulse, axis=0)
        - signal.lfilter([1], [1, -a_r], impulse, axis=0)
    )[:, 0] / act._peak
    t = np.arange(trace.size) * act.dt_s
    t_peak = t[np.argmax(trace)]
    assert t_peak == pytest.approx(np.log(5) * 0.05 / 0.4, abs=0.01)
    assert trace.max() == pytest.approx(1.0, abs=0.01)
    late = t > 1.0
    slope = np.polyfit(t[late], np.log(trace[late]), 1)[0]
    assert -1 / slope == pytest.approx(0.5, rel=0.02)


def test_worm_frames_change_with_activity_beads_do_not(sim_core, bench) -> None:
    focus = float(sim_core.getProperty("Specimen", "FocusZ"))
    a, b = bench.clean_photons(focus, 0.0), bench.clean_photons(focus, 7.3)
    assert np.abs(a - b).max() > 0.05 * a.max()
    sim_core.setProperty("Specimen", "Kind", "beads")
    a, b = bench.clean_photons(focus, 0.0), bench.clean_photons(focus, 7.3)
    np.testing.assert_allclose(a, b)


def test_tilted_sheet_comes_into_focus_across_the_field(sim_core, bench) -> None:
    """The two sides of a 3° tilted sheet are sharpest at different stage positions."""
    sim_core.setProperty("Specimen", "Kind", "tilted-sheet")
    focus = float(sim_core.getProperty("Specimen", "FocusZ"))
    stages = focus + np.arange(-4, 4.01, 0.5)
    sharp_left, sharp_right = [], []
    for z in stages:
        img = bench.clean_photons(z_um=z)
        hp = img - 0.25 * (
            np.roll(img, 1, 0)
            + np.roll(img, -1, 0)
            + np.roll(img, 1, 1)
            + np.roll(img, -1, 1)
        )
        sharp_left.append(hp[20:-20, 64:192].var())
        sharp_right.append(hp[20:-20, 320:448].var())
    z_left = stages[int(np.argmax(sharp_left))]
    z_right = stages[int(np.argmax(sharp_right))]
    # quarter-field centres are ±41.6 µm apart in x: depth differs by 2·41.6·tan 3°
    depth_diff = 2 * 41.6 * np.tan(np.deg2rad(3.0))
    stage_per_depth = bench.camera.bench()._require("optics").optics.n_immersion / 1.33
    assert z_right - z_left == pytest.approx(depth_diff * stage_per_depth, abs=1.0)


def test_same_seed_same_frames_other_seed_differs() -> None:
    import gc

    frames = []
    for seed in (7, 7, 8):
        core = DeepzCore()
        core.loadSystemConfiguration(str(SIMULATOR_CONFIG))
        core.setProperty("Camera", "Clock", "simulated")
        core.setProperty("Specimen", "Kind", "beads")
        core.setProperty("Specimen", "Seed", seed)
        core.setPosition(6.0)
        frames.append(_snap(core))
        core.unloadAllDevices()
        del core
        gc.collect()
    np.testing.assert_array_equal(frames[0], frames[1])
    assert np.abs(frames[0] - frames[2]).max() > 100


def test_streamed_time_lapse_carries_camera_metadata(sim_core) -> None:
    metas = []
    sim_core.mda.events.frameReady.connect(lambda img, ev, meta: metas.append(meta))
    sim_core.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": 6}))
    # Micro-Manager's sequence buffer stores metadata values as text
    cam = [m["camera_metadata"] for m in metas]
    assert [int(c["frame_index"]) for c in cam] == list(range(6))
    times = np.array([float(c["time_s"]) for c in cam])
    np.testing.assert_allclose(np.diff(times), 0.010, atol=1e-9)  # simulated clock
    assert float(cam[-1]["cumulative_dose_J_cm2"]) == pytest.approx(6 * 0.2 * 0.010)


def test_two_simulators_in_one_process_are_independent() -> None:
    import gc

    cores = []
    for kind in ("beads", "worm"):
        core = DeepzCore()
        core.loadSystemConfiguration(str(SIMULATOR_CONFIG))
        core.setProperty("Specimen", "Kind", kind)
        cores.append(core)
    assert bench_for(cores[0]) is not bench_for(cores[1])
    assert bench_for(cores[0]).specimen.specimen.kind == "beads"
    assert bench_for(cores[1]).specimen.specimen.kind == "worm"
    for core in cores:
        core.unloadAllDevices()
    del cores, core
    gc.collect()


def test_roi_crops_the_same_field(sim_core, bench) -> None:
    sim_core.setProperty("Specimen", "Kind", "beads")
    sim_core.setPosition(float(sim_core.getProperty("Specimen", "FocusZ")))
    full_truth = bench.clean_image_adu()
    sim_core.setROI(100, 60, 128, 96)  # x, y, width, height
    assert (sim_core.getImageWidth(), sim_core.getImageHeight()) == (128, 96)
    frames = np.stack([_snap(sim_core) for _ in range(8)])
    assert frames.shape == (8, 96, 128)
    crop = full_truth[60:156, 100:228]
    corr = np.corrcoef(frames.mean(axis=0).ravel(), crop.ravel())[0, 1]
    assert corr > 0.95
    sim_core.clearROI()
    assert sim_core.getImageWidth() == 512


def test_activity_of_a_long_run_keeps_bounded_memory_and_exact_truth() -> None:
    """An hour of ground truth: the same values wherever it is asked from, with at
    most two chunks of traces held (all of it would be ~1 GiB for 180 neurons)."""
    import tracemalloc

    from deepz_live.acquisition.simulator import CalciumActivity

    tracemalloc.start()
    act = CalciumActivity(180, seed=3, chunk_s=10.0)
    early = np.array([0.0, 0.33, 9.99, 10.0, 17.7])
    first = act.dff(early)
    late = act.dff(np.array([3600.0]))  # 361 chunks in, the early ones dropped
    assert np.array_equal(act.dff(early), first)  # made again, identically
    assert np.array_equal(act.dff(np.array([3600.0])), late)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    chunk_bytes = 10.0 / act.dt_s * 180 * 8
    assert held < 4 * chunk_bytes  # two cached chunks and the chunks' starts
    fresh = CalciumActivity(180, seed=3, chunk_s=10.0)
    assert np.array_equal(fresh.dff(np.array([3600.0])), late)  # order does not matter
