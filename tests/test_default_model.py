"""The bundled models: what they claim to be, and they refocus a fresh worm."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from deepz_live.inference import (
    DEFAULT_MODEL_NAME,
    bundled_model_names,
    load_model,
    psnr,
)

pytestmark = pytest.mark.skipif(
    DEFAULT_MODEL_NAME not in bundled_model_names(),
    reason="no bundled default model in this checkout",
)

#: the reference Deep-Z U-Net and the one-pass stack variant
BUNDLED = [DEFAULT_MODEL_NAME, "default-fast"]


def test_both_models_are_bundled_with_their_architectures() -> None:
    assert set(BUNDLED) <= set(bundled_model_names())
    assert not load_model("default")[0].config.is_stack
    fast = load_model("default-fast")[0].config
    assert fast.is_stack
    assert fast.planes_um == tuple(np.arange(-10.0, 10.01, 0.5))


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_describes_the_simulator_optics(name) -> None:
    _, info = load_model(name)
    assert info.pixel_size_um == pytest.approx(0.325)
    assert info.wavelength_um == pytest.approx(0.525)
    assert info.na == pytest.approx(0.75)
    assert info.dz_range_um == 10.0
    sources = [d["source"] for d in info.training["data"]]
    assert any("worm" in s for s in sources) and any("beads" in s for s in sources)
    assert all(len(d["sha256"]) == 64 for d in info.training["data"])
    assert "deepz train" in info.training["command"]


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_refocuses_a_fresh_worm_better_than_identity(name) -> None:
    from deepz_live.acquisition import SIMULATOR_CONFIG, DeepzCore
    from deepz_live.acquisition.simulator import bench_for
    from deepz_live.inference import Refocuser, ZStack
    from deepz_live.inference._evaluate import centre_crop_window

    core = DeepzCore()
    try:
        core.loadSystemConfiguration(str(SIMULATOR_CONFIG))
        core.setProperty("Camera", "Clock", "simulated")
        core.setProperty("Specimen", "Seed", 950)  # never used in training
        focus = float(core.getProperty("Specimen", "FocusZ"))
        planes = []
        for dz in (-4.0, 0.0, 4.0):
            core.setPosition(focus + dz)
            core.snapImage()
            planes.append(core.getImage().astype(np.float32))
        offset = bench_for(core).camera.noise.offset_adu
    finally:
        core.unloadAllDevices()
        del core
        gc.collect()

    stack = ZStack(
        data=np.stack(planes), z_um=np.array([-4.0, 0.0, 4.0]),
        pixel_um=(0.325, 0.325), source="fresh worm",
    )  # fmt: skip
    window = centre_crop_window(stack, 128)
    below, focal, above = (p[window] for p in planes)
    refocuser = Refocuser(name, backend="torch")
    assert refocuser.normalization.offset == pytest.approx(offset)
    predicted = refocuser.refocus(focal, [-4.0, 4.0])
    for guess, real in zip(predicted, (below, above), strict=True):
        data_range = float(real.max() - real.min())
        assert psnr(guess, real, data_range) > psnr(focal, real, data_range) + 1.0
