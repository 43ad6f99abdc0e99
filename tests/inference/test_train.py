"""Training: the loss falls, checkpoints resume, the model file round-trips."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest
from scipy import ndimage

from deepz_live.inference import (
    GeneratorConfig,
    Normalization,
    PairConfig,
    TargetNormalization,
    TrainConfig,
    Trainer,
    ZStack,
    load_model,
    save_model,
)

if TYPE_CHECKING:
    from pathlib import Path

torch = pytest.importorskip("torch")


def _blob_stack(seed: int, n_planes: int = 13, size: int = 48) -> ZStack:
    """Points blurred more with distance from focus: a toy widefield z-stack."""
    rng = np.random.default_rng(seed)
    points = np.zeros((size, size), np.float32)
    points[rng.integers(4, size - 4, 30), rng.integers(4, size - 4, 30)] = 2000
    z = np.arange(n_planes) * 1.0 - (n_planes // 2)
    planes = [ndimage.gaussian_filter(points, 0.8 + 0.6 * abs(zz)) for zz in z]
    data = np.stack(planes) + 100 + rng.normal(0, 2, (n_planes, size, size))
    return ZStack(
        data=data.astype(np.float32),
        z_um=z,
        pixel_um=(0.325, 0.325),
        source=f"blobs-{seed}",
        camera_offset=100.0,
    )


def _config(**changes) -> TrainConfig:
    base = TrainConfig(
        epochs=1,
        steps_per_epoch=3,
        batch_size=4,
        pairs=PairConfig(dz_range_um=4.0, crop=32),
        generator=GeneratorConfig(base_width=4, depth=2),
        discriminator=None,
        lr_generator=3e-3,
        device="cpu",
        val_inputs_per_stack=1,
        seed=1,
    )
    from dataclasses import replace

    return replace(base, **changes)


@pytest.fixture(scope="module")
def stacks() -> list[ZStack]:
    return [_blob_stack(s) for s in range(3)]


def test_a_few_steps_reduce_the_loss(stacks) -> None:
    """Optimisation works: L1 on a tiny dataset (one batch) falls well below the start.

    Training starts from the identity (zero-initialised residual head).
    """
    torch.set_num_threads(1)
    trainer = Trainer(stacks, _config())
    x, y = trainer.train_pairs.batch(8, np.random.default_rng(99))
    batch = (torch.from_numpy(x), torch.from_numpy(y))
    losses = [trainer.step(batch)["l1"] for _ in range(80)]
    # the default pixel loss is L2: the mean squared error of "no refocusing"
    start = float(((batch[0][:, :1] - batch[1]) ** 2).mean())
    assert losses[0] == pytest.approx(start)
    assert np.mean(losses[-5:]) < 0.7 * losses[0]


def test_gan_step_updates_both_networks(stacks) -> None:
    from deepz_live.inference import DiscriminatorConfig

    trainer = Trainer(
        stacks,
        _config(discriminator=DiscriminatorConfig(base_width=4, n_downsamplings=2)),
    )
    before = [p.detach().clone() for p in trainer.discriminator.parameters()]
    losses = trainer.step()
    assert {"discriminator", "adversarial", "l1", "ssim"} <= set(losses)
    after = list(trainer.discriminator.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_checkpoint_resumes_where_it_stopped(stacks, tmp_path: Path) -> None:
    ckpt = tmp_path / "m.safetensors.ckpt"
    first = Trainer(stacks, _config(epochs=1))
    first.run(checkpoint=ckpt)
    resumed = Trainer(stacks, _config(epochs=2))
    resumed.load_checkpoint(ckpt)
    assert resumed.epoch == 1
    for a, b in zip(
        first.generator.state_dict().values(),
        resumed.generator.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b)
    history = resumed.run(checkpoint=ckpt)
    assert [h.epoch for h in history] == [1, 2]
    # a checkpoint from other settings is refused, not silently mixed
    other = Trainer(stacks, _config(epochs=2, lr_generator=1e-4))
    with pytest.raises(Exception, match="different settings"):
        other.load_checkpoint(ckpt)


def test_trained_model_file_round_trips(stacks, tmp_path: Path) -> None:
    trainer = Trainer(stacks, _config())
    trainer.run()
    info = trainer.model_info("toy")
    path = tmp_path / "toy.safetensors"
    save_model(path, trainer.generator, info)
    generator, loaded = load_model(path)
    assert loaded.dz_range_um == 4.0
    assert loaded.pixel_size_um == pytest.approx(0.325)
    assert [d["source"] for d in loaded.training["data"]] == [s.source for s in stacks]
    assert "bins" in loaded.validation
    x = torch.randn(2, 2, 32, 32)
    trainer.generator.eval()
    with torch.inference_mode():
        torch.testing.assert_close(generator(x), trainer.generator(x))


def test_cli_train_then_evaluate(stacks, tmp_path: Path, capsys) -> None:
    import tifffile

    from deepz._cli import main

    paths = []
    for stack in stacks[:2]:
        p = tmp_path / f"{stack.source}.ome.tif"
        tifffile.imwrite(
            p,
            stack.data.astype(np.uint16),
            ome=True,
            metadata={
                "axes": "ZYX",
                "PhysicalSizeX": 0.325,
                "PhysicalSizeY": 0.325,
                "PhysicalSizeZ": 1.0,
            },
        )
        paths.append(str(p))
    model = tmp_path / "toy.safetensors"
    args = ["train", *paths, "--out", str(model), "--epochs", "1"]
    args += ["--steps-per-epoch", "2", "--crop", "32", "--base-width", "4"]
    args += ["--dz-range-um", "3", "--no-gan", "--device", "cpu"]
    try:
        main(args)
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    assert model.exists()
    capsys.readouterr()
    plot = tmp_path / "eval.png"
    args = ["evaluate", str(model), paths[0], "--json", "--crop", "0"]
    args += ["--plot", str(plot), "--device", "cpu"]
    try:
        main(args)
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert [b["dz_um"] for b in result["bins"] if b["pairs"]] == [1, 2, 3]
    for key in (
        "axial_error_median_um",
        "axial_within_1um_fraction",
        "axial_baseline_median_um",
    ):
        assert key in result and all(key in b for b in result["bins"])
    assert result["clean_targets"] is False  # plain stacks carry no noise-free twin
    assert plot.exists()
    # only the right half of the field
    args = ["evaluate", str(model), paths[0], "--json", "--crop", "0"]
    try:
        main([*args, "--x-range", "24:48", "--device", "cpu"])
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["stacks"][0].endswith("[x=24:48]")


def test_cli_cross_modality_train_then_evaluate(tmp_path: Path, capsys) -> None:
    """Channel 1 (blurred, 'widefield') in, channel 0 (sharp, shifted) as target."""
    import tifffile

    from deepz._cli import main
    from deepz_live.inference import read_model_info

    rng = np.random.default_rng(7)
    n_z, height, width = 9, 40, 72
    points = np.zeros((height, width), np.float32)
    points[rng.integers(4, height - 4, 40), rng.integers(4, width - 4, 40)] = 3000
    z = np.arange(n_z) - n_z // 2
    wide = np.stack([ndimage.gaussian_filter(points, 1.5 + 0.8 * abs(k)) for k in z])
    sharp = np.stack([ndimage.gaussian_filter(points, 0.8 + 0.3 * abs(k)) for k in z])
    sharp = np.roll(sharp, -2, axis=2)  # the two detectors are offset by 2 columns
    data = np.stack([sharp + 20, wide + 100], axis=1)  # ZCYX
    path = tmp_path / "a.ome.tif"
    tifffile.imwrite(
        path,
        (data + rng.normal(0, 1, data.shape)).astype(np.uint16),
        ome=True,
        metadata={
            "axes": "ZCYX",
            "PhysicalSizeX": 0.325,
            "PhysicalSizeY": 0.325,
            "PhysicalSizeZ": 1.0,
        },
    )
    model = tmp_path / "m.safetensors"
    args = ["train", str(path), "--channel", "1", "--target-channel", "0"]
    args += ["--epochs", "1", "--steps-per-epoch", "2", "--crop", "32"]
    args += ["--base-width", "4", "--no-gan", "--device", "cpu", "--split-by"]
    args += ["region", "--val-fraction", "0.5", "--dz-range-um", "3"]
    args += ["--out", str(model)]
    try:
        main(args)
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "registered" in err and "dx +2.00 px" in err
    info = read_model_info(model)
    assert info.training["cross_modality"]["input_channel"] == 1
    assert info.training["cross_modality"]["target_channel"] == 0
    assert info.training["target_normalization"]["mode"] == "input"
    np.testing.assert_allclose(
        info.training["cross_modality"]["shifts"][0]["shift_zyx"], (0, 0, 2), atol=0.1
    )
    # the training run validated against the target channel, in focus included
    assert info.validation["bins"][0]["dz_um"] == 0

    args = ["evaluate", str(model), str(path), "--channel", "1", "--json"]
    args += ["--target-channel", "0", "--crop", "0", "--x-range", "36:72"]
    try:
        main([*args, "--device", "cpu"])
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert [b["dz_um"] for b in result["bins"]] == [0, 1, 2, 3]
    # registration cut the file's columns 0, 1 (the target has no data there)
    assert result["stacks"][0].endswith("[c=1][x=36:72]")
    assert "cross-modality" in result["notes"][0]

    # a cross-modal model scored against its input's own planes: a clear refusal
    with pytest.raises(SystemExit) as refused:
        main(["evaluate", str(model), str(path), "--channel", "1", "--device", "cpu"])
    assert refused.value.code
    assert "cross-modality model" in capsys.readouterr().err


def test_cross_modality_checkpoint_keeps_the_target_normalization(
    stacks, tmp_path: Path
) -> None:
    targets = [
        ZStack(2.0 * s.data + 7.0, s.z_um, s.pixel_um, f"{s.source}-t") for s in stacks
    ]
    chosen = TargetNormalization(Normalization(offset=207.0), "stack")
    ckpt = tmp_path / "x.safetensors.ckpt"
    first = Trainer(
        stacks, _config(), target_stacks=targets, target_normalization=chosen
    )
    first.run(checkpoint=ckpt)
    assert first.history[-1].validation["bins"][0]["dz_um"] == 0
    info = first.model_info("x")
    assert info.training["target_normalization"] == chosen.to_dict()
    assert info.training["target_brightness_ratio"] == pytest.approx(2.0, rel=0.01)
    resumed = Trainer(stacks, _config(epochs=2), target_stacks=targets)
    resumed.load_checkpoint(ckpt)
    assert resumed.target_normalization == chosen
    assert resumed.train_pairs.target_normalization == chosen
    with pytest.raises(Exception, match="target stacks"):
        Trainer(stacks, _config(epochs=2)).load_checkpoint(ckpt)
