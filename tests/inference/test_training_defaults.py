"""Training settings from the data, the best validated epoch, an honest verdict."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest
from scipy import ndimage

from deepz_live.inference import (
    GeneratorConfig,
    InferenceError,
    Normalization,
    PairConfig,
    PairSampler,
    TrainConfig,
    Trainer,
    ZStack,
    training_defaults,
)

if TYPE_CHECKING:
    from pathlib import Path

torch = pytest.importorskip("torch")


def _stack(n_z: int = 9, step: float = 1.0, shape=(48, 80), **optics) -> ZStack:
    rng = np.random.default_rng(0)
    points = np.zeros(shape, np.float32)
    points[rng.integers(4, shape[0] - 4, 25), rng.integers(4, shape[1] - 4, 25)] = 2e3
    z = (np.arange(n_z) - n_z // 2) * step
    planes = [ndimage.gaussian_filter(points, 0.8 + 0.6 * abs(v)) for v in z]
    return ZStack(
        data=np.stack(planes) + 100 + rng.normal(0, 2, (n_z, *shape)),
        z_um=z, pixel_um=(0.325, 0.325), source="blobs", camera_offset=100.0,
        **optics,
    )  # fmt: skip


def _write_imagej(path: Path, stack: ZStack) -> Path:
    """The stack as a calibrated ImageJ TIFF (what `deepz train` reads from disk)."""
    import tifffile

    tifffile.imwrite(
        path, stack.data.astype(np.uint16), imagej=True,
        resolution=(1 / stack.pixel_um[1], 1 / stack.pixel_um[0]),
        metadata={"spacing": stack.voxel_um[0], "unit": "um", "axes": "ZYX"},
    )  # fmt: skip
    return path


def test_range_comes_from_the_stack_extent_and_the_optics() -> None:
    shallow = _stack(n_z=9, step=1.0)  # spans 8 µm
    chosen = training_defaults([shallow], multiple=16)
    assert chosen.dz_range_um == 4.0  # half the extent
    tall = _stack(n_z=61, step=0.5)  # spans 30 µm
    assert training_defaults([tall, tall], multiple=16).dz_range_um == 10.0
    # NA 1.4 oil, 0.525 µm, 0.325 µm pixels: depth of field 0.525·1.515/1.4² +
    # 1.515·0.325/1.4 = 0.758 µm -> ten of them, on the 0.5 µm plane grid: 7.5 µm
    oil = _stack(n_z=61, step=0.5, na=1.4, wavelength_um=0.525)
    assert training_defaults([oil, oil], multiple=16).dz_range_um == 7.5
    assert any(
        "depths of field" in r
        for r in training_defaults([oil, oil], multiple=16).reasons
    )


def test_a_single_stack_is_split_into_bands_that_hold_a_crop() -> None:
    stack = _stack(shape=(48, 80))
    chosen = training_defaults([stack], multiple=16)
    assert chosen.split_by == "region"
    assert chosen.crop == 32  # fits both sides of an 80 px field
    band = round(chosen.val_fraction * 80)
    assert band >= chosen.crop and 80 - band >= chosen.crop
    # and the sampler accepts it, holding out a band of columns (the longer axis)
    sampler = PairSampler(
        [stack], PairConfig(dz_range_um=chosen.dz_range_um, crop=chosen.crop),
        Normalization(offset=100.0), split="val",
        split_by="region", val_fraction=chosen.val_fraction,
    )  # fmt: skip
    (held_out,) = sampler.held_out_stacks()
    assert held_out.shape[1:] == (48, band)


def test_a_tall_field_is_split_along_its_rows() -> None:
    from deepz_live.inference import Normalization

    stack = _stack(shape=(96, 40))
    sampler = PairSampler(
        [stack], PairConfig(dz_range_um=3.0, crop=16), Normalization(offset=100.0),
        split="train", split_by="region", val_fraction=0.25,
    )  # fmt: skip
    (region,) = sampler.regions
    assert (region.y_start, region.y_stop, region.x_start, region.x_stop) == (
        0, 72, 0, 40,
    )  # fmt: skip
    (held_out,) = sampler.held_out_stacks()
    assert held_out.shape[1:] == (24, 40) and held_out.source.endswith("[y=72:96]")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"crop": 0}, "positive multiple of 16"),
        ({"crop": 24}, "multiple of 16"),
        ({"crop": 256}, "larger than the images"),
        ({"dz_range_um": -2.0}, "more than 0"),
        ({"dz_range_um": 50.0}, "beyond every stack"),
        ({"val_fraction": 0.0}, "between 0 and 1"),
        ({"val_fraction": 0.1}, "both must hold"),
        ({"split_by": "stack"}, "at least two"),
    ],
)
def test_settings_the_data_cannot_support_are_clear_errors(settings, message) -> None:
    with pytest.raises(InferenceError, match=message):
        training_defaults([_stack()], multiple=16, **settings)


def _config(**changes) -> TrainConfig:
    from dataclasses import replace

    base = TrainConfig(
        epochs=3, steps_per_epoch=2, batch_size=2,
        pairs=PairConfig(dz_range_um=3.0, crop=32),
        generator=GeneratorConfig(base_width=4, depth=2), discriminator=None,
        device="cpu", val_inputs_per_stack=1, seed=1,
    )  # fmt: skip
    return replace(base, **changes)


def test_the_best_validated_epoch_is_kept_and_judged(tmp_path: Path) -> None:
    from deepz_live.inference import load_model, save_model

    torch.set_num_threads(1)
    stacks = [_stack(), _stack()]
    trainer = Trainer(stacks, _config(lr_generator=1e-2))
    scores = []

    def record(log) -> None:
        scores.append(trainer.validation_score(trainer.validate()))

    trainer.run(on_epoch=record)
    best = int(np.argmax(scores)) + 1
    assert trainer.best_epoch == best
    assert trainer.best_score == pytest.approx(max(scores), abs=1e-6)
    assert trainer.use_best() == best
    # the weights are the best epoch's: validating again gives its score
    assert trainer.validation_score(trainer.validate()) == pytest.approx(
        max(scores), abs=1e-4
    )
    info = trainer.model_info("best")
    assert info.training["best_epoch"] == best
    assert info.training["beats_identity"] is (max(scores) > 0)
    out = tmp_path / "m.safetensors"
    save_model(out, trainer.generator, info)
    _, loaded = load_model(out)
    assert loaded.training["validation_score_db"] == pytest.approx(max(scores))
    # the stacks span 8 µm: a ±3 µm model reached all of it
    assert loaded.dz_range_um == 3.0


def test_the_trained_range_is_what_the_stacks_reached() -> None:
    torch.set_num_threads(1)
    shallow = [_stack(n_z=3, step=1.0, shape=(48, 48)) for _ in range(2)]
    trainer = Trainer(shallow, _config(epochs=0))
    assert trainer.trained_range_um == 2.0  # the stacks span 2 µm, not ±3
    assert json.loads(json.dumps(trainer.model_info("x").dz_range_um)) == 2.0


def test_cli_train_on_one_stack_with_no_options_says_how_it_compares(
    tmp_path: Path, capsys
) -> None:
    from deepz._cli import main

    path = _write_imagej(tmp_path / "one.tif", _stack(n_z=9, step=1.0, shape=(64, 96)))
    out = tmp_path / "m.safetensors"
    args = ["train", str(path), "--out", str(out), "--epochs", "2"]
    args += ["--steps-per-epoch", "2", "--base-width", "4", "--device", "cpu"]
    try:
        main(args)
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "chosen from the data: dz range ±4 µm" in err
    assert "held out for validation: columns" in err
    assert "beat" in err and "identity" in err
    from deepz_live.inference import read_model_info

    info = read_model_info(out)
    assert info.training["beats_identity"] in (True, False)
    verdict = "beats the identity" if info.training["beats_identity"] else "never beat"
    assert verdict in err


def test_a_model_that_never_beat_the_identity_warns_when_loaded(tmp_path) -> None:
    from deepz_live.inference import ModelQualityWarning, Refocuser, save_model

    torch.set_num_threads(1)
    trainer = Trainer([_stack(), _stack()], _config(epochs=0))
    info = trainer.model_info("worse")
    info.training["beats_identity"] = False
    out = tmp_path / "worse.safetensors"
    save_model(out, trainer.generator, info)
    with pytest.warns(ModelQualityWarning, match="never beat the identity"):
        Refocuser(out, backend="torch")


def test_l2_keeps_an_uncertain_object_that_l1_erases() -> None:
    """One pixel whose object is there in a third of the cases (its depth unsure).

    The best constant prediction under L1 is the median (0: the object vanishes),
    under L2 the mean (1/3: it stays, dimmer). `pixel_loss` is what training uses.
    """
    from deepz_live.inference._losses import pixel_loss

    targets = torch.tensor([0.0, 0.0, 1.0])
    found = {}
    for kind in ("l1", "l2"):
        guess = torch.full((1,), 0.5, requires_grad=True)
        optimizer = torch.optim.SGD([guess], lr=0.01)
        for _ in range(600):
            optimizer.zero_grad()
            pixel_loss(guess - targets, kind).backward()
            optimizer.step()
        found[kind] = float(guess.detach())
    assert found["l1"] == pytest.approx(0.0, abs=0.01)
    assert found["l2"] == pytest.approx(1 / 3, abs=0.01)


def test_fine_tuning_starts_from_a_saved_model(tmp_path) -> None:
    from deepz_live.inference import save_model

    torch.set_num_threads(1)
    stacks = [_stack(), _stack()]
    first = Trainer(stacks, _config(epochs=0, seed=3))
    out = tmp_path / "start.safetensors"
    save_model(out, first.generator, first.model_info("start"))
    second = Trainer(stacks, _config(epochs=0, seed=4))
    before = next(iter(second.generator.state_dict().values())).clone()
    second.initialize_from(out)
    for key, value in first.generator.state_dict().items():
        assert torch.equal(second.generator.state_dict()[key], value)
    assert not torch.equal(before, second.generator.state_dict()[key])
    wider = Trainer(
        stacks,
        _config(epochs=0, generator=GeneratorConfig(base_width=8, depth=2)),
    )
    with pytest.raises(InferenceError, match="another generator"):
        wider.initialize_from(out)


def test_fine_tuning_accepts_the_bundled_reference_model() -> None:
    from deepz_live.inference import bundled_model_names

    if "default" not in bundled_model_names():
        pytest.skip("no bundled default model in this checkout")
    torch.set_num_threads(1)
    trainer = Trainer(
        [_stack(shape=(64, 64)), _stack(shape=(64, 64))],
        _config(epochs=0, generator=GeneratorConfig(), pairs=PairConfig(crop=32)),
    )
    trainer.initialize_from("default")  # an older file without planes_um


def test_a_stack_range_on_an_uneven_plane_grid_fits_the_stack_planes(
    tmp_path, capsys
) -> None:
    from deepz._cli import main

    stack = _stack(n_z=31, step=0.333, shape=(64, 96))
    path = _write_imagej(tmp_path / "uneven.tif", stack)
    out = tmp_path / "m.safetensors"
    for bad in ("-1", "nan"):
        with pytest.raises(SystemExit) as exc:
            main(["train", str(path), "--out", str(out), "--lr", bad])
        assert exc.value.code and "--lr must be more than 0" in capsys.readouterr().err
    args = ["train", str(path), "--out", str(out), "--architecture", "stack"]
    args += ["--epochs", "1", "--steps-per-epoch", "1", "--base-width", "4"]
    try:
        main([*args, "--device", "cpu"])
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    from deepz_live.inference import read_model_info

    # half of 9.99 µm on a 0.333 µm grid is 4.995 µm: the 0.5 µm planes reach 4.5
    assert read_model_info(out).dz_range_um == pytest.approx(4.5)
