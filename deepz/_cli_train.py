"""``deepz train``: a Deep-Z model from z-stacks of one microscope.

`train` reads the stacks (`deepz._cli_stacks`), lets the data choose what the options
leave open (`training_defaults`: crop, refocusing range, validation split; each choice
is printed with its reason), trains with a progress bar, and ends with one honest
paragraph on whether the saved model beats doing nothing (`_training_verdict`).
Progress notes go to stderr.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from deepz._cli_options import (
    ChannelOption,
    DeviceOption,
    RegisterOption,
    StacksArgument,
    TargetChannelOption,
    VoxelOption,
    say,
)
from deepz._cli_stacks import read_stacks_given, read_target_stacks, voxel_from_option

if TYPE_CHECKING:
    from deepz_live.inference import EpochLog, SplitRegion, Trainer


def register(app: typer.Typer) -> None:
    """Add ``train`` to the ``deepz`` command line."""
    app.command()(train)


def train(
    stacks: StacksArgument,
    out: Annotated[
        Path, typer.Option("--out", help="Model file to write (*.safetensors).")
    ],
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs.")] = 20,
    steps_per_epoch: Annotated[
        int, typer.Option("--steps-per-epoch", help="Batches per epoch.")
    ] = 200,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Crop pairs per training step.")
    ] = 8,
    crop: Annotated[
        int | None,
        typer.Option(
            "--crop",
            help="Training crop (px). Default: from the data (≥ 128 px and "
            "holding the widest defocus blur, within the image).",
            show_default=False,
        ),
    ] = None,
    dz_range_um: Annotated[
        float | None,
        typer.Option(
            "--dz-range-um",
            help="Refocusing range ±µm. Default: from the data (at most 10 µm, "
            "half the stacks' z extent, and ten depths of field).",
            show_default=False,
        ),
    ] = None,
    base_width: Annotated[
        int, typer.Option("--base-width", help="U-Net channels at full size.")
    ] = 16,
    architecture: Annotated[
        str,
        typer.Option(
            "--architecture",
            help="'unet': Deep-Z as published, one network pass per plane. "
            "'stack': one pass outputs the planes -range:+range:--stack-step-um "
            "(faster; planes in between are interpolated).",
        ),
    ] = "unet",
    stack_step_um: Annotated[
        float,
        typer.Option(
            "--stack-step-um", help="Plane step of --architecture stack (µm)."
        ),
    ] = 0.5,
    gan: Annotated[
        bool | None,
        typer.Option(
            "--gan/--no-gan",
            help="Train with the adversarial term. Default: on for 'unet', "
            "off for 'stack' (which trains without it).",
            show_default=False,
        ),
    ] = None,
    split_by: Annotated[
        str | None,
        typer.Option(
            "--split-by",
            help="Hold out whole stacks ('stack') or a band along the longer "
            "axis of each field ('region') for validation. Default: 'stack' "
            "with two or more stacks, else 'region'.",
            show_default=False,
        ),
    ] = None,
    camera_offset: Annotated[
        float | None,
        typer.Option(
            "--camera-offset",
            help="Camera dark level in counts. Default: from the files, else "
            "a low percentile of the data.",
        ),
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(
            "--val-fraction",
            help="Share of stacks (or of each field's longer side) held out for "
            "validation. Default: 0.25, widened so that the band holds a crop.",
            show_default=False,
        ),
    ] = None,
    loss: Annotated[
        str,
        typer.Option(
            "--loss",
            help="Pixel loss: 'l2' (mean squared error: an object whose depth "
            "is uncertain stays visible, brightest at its most likely depth) "
            "or 'l1' (median: uncertain objects vanish).",
        ),
    ] = "l2",
    clean_targets: Annotated[
        bool,
        typer.Option(
            "--clean-targets/--recorded-targets",
            help="Learn from the noise-free twins of simulated stacks where "
            "they exist (deepz zstack --ground-truth), else the recorded planes.",
        ),
    ] = True,
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            help="Start from this model's weights (file or bundled name) instead "
            "of from scratch: fine-tuning. Same architecture and planes. "
            "Ignored with --resume.",
            show_default=False,
        ),
    ] = None,
    lr: Annotated[
        float,
        typer.Option(
            "--lr", help="Learning rate of the generator (AdamW), more than 0."
        ),
    ] = 2e-4,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            help="Seed of the crops, the split and the initial weights (the same "
            "seed and data repeat a run on the same machine).",
        ),
    ] = 0,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from OUT.ckpt.")
    ] = False,
    channel: ChannelOption = None,
    target_channel: TargetChannelOption = None,
    register: RegisterOption = True,
    voxel_um: VoxelOption = None,
    device: DeviceOption = "auto",
    name: Annotated[str | None, typer.Option("--name", help="Model name.")] = None,
    weights: Annotated[
        str,
        typer.Option(
            "--weights",
            help="Store weights as float32 or float16 (half the file size).",
        ),
    ] = "float32",
) -> None:
    """Train a Deep-Z model from z-stacks of one microscope.

    With --target-channel, train the cross-modality variant: input planes from
    --channel (e.g. widefield), targets from the registered target channel
    (e.g. confocal) of the same files.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from deepz_live.inference import (
        DiscriminatorConfig,
        GeneratorConfig,
        InferenceError,
        Normalization,
        TrainConfig,
        Trainer,
        required_multiple,
        save_model,
        training_defaults,
        with_overrides,
    )

    if split_by not in (None, "stack", "region"):
        raise typer.BadParameter("--split-by must be 'stack' or 'region'.")
    if loss not in ("l1", "l2"):
        raise typer.BadParameter("--loss must be 'l1' or 'l2'.")
    if architecture not in ("unet", "stack"):
        raise typer.BadParameter("--architecture must be 'unet' or 'stack'.")
    if gan is None:
        gan = architecture == "unet"
    voxel = voxel_from_option(voxel_um)
    data = read_stacks_given(stacks, channel, voxel)
    targets = None
    origins = [(0, 0)] * len(data)
    extra: dict = {"command": " ".join(["deepz", *sys.argv[1:]])}
    if target_channel is not None:
        data, targets, origins, shifts = read_target_stacks(
            stacks, data, channel, target_channel, voxel, register
        )
        extra["cross_modality"] = {
            "input_channel": channel,
            "target_channel": target_channel,
            "registered": register,
            "shifts": shifts,
        }
    generator = GeneratorConfig(base_width=base_width)
    try:
        chosen = training_defaults(
            data,
            multiple=required_multiple(generator),
            dz_range_um=dz_range_um,
            crop=crop,
            split_by=split_by,
            val_fraction=val_fraction,
            range_step_um=stack_step_um if architecture == "stack" else None,
        )
    except InferenceError as exc:
        raise typer.BadParameter(str(exc)) from None
    for reason in chosen.reasons:
        say(f"chosen from the data: {reason}")
    if not (math.isfinite(lr) and lr > 0):
        raise typer.BadParameter(f"--lr must be more than 0, got {lr}.")
    if architecture == "stack":
        try:
            generator = GeneratorConfig.stack(
                chosen.dz_range_um, stack_step_um, base_width=base_width
            )
        except ValueError as exc:
            raise typer.BadParameter(f"--stack-step-um: {exc}") from None
    config = with_overrides(
        TrainConfig(),
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        batch_size=batch_size,
        crop=chosen.crop,
        dz_range_um=chosen.dz_range_um,
        generator=generator,
        discriminator=DiscriminatorConfig() if gan else None,
        split_by=chosen.split_by,
        val_fraction=chosen.val_fraction,
        seed=seed,
        device=device,
        pixel_loss=loss,
        clean_targets=clean_targets,
        lr_generator=lr,
    )
    normalization = (
        None if camera_offset is None else Normalization(offset=camera_offset)
    )
    trainer = Trainer(data, config, normalization=normalization, target_stacks=targets)
    if chosen.split_by == "region":
        # in the file's pixels (registration may have cut the field), so that
        # evaluation can score exactly those
        for region in trainer.val_pairs.regions:
            say(
                "held out for validation: "
                + _band_text(region, origins[region.stack_index])
                + f" of {data[region.stack_index].source}"
            )
    checkpoint = Path(str(out) + ".ckpt")
    if init is not None and not resume:
        try:
            trainer.initialize_from(init)
        except InferenceError as exc:
            raise typer.BadParameter(f"--init: {exc}") from None
        extra["initialized_from"] = init
    if resume:
        if not checkpoint.exists():
            raise typer.BadParameter(f"--resume: no checkpoint at {checkpoint}.")
        trainer.load_checkpoint(checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    if trainer.epoch >= epochs:
        say(
            f"The checkpoint is at epoch {trainer.epoch} (≥ --epochs {epochs}): "
            "nothing to train, saving the model."
        )
    else:
        say(
            f"Training on {len(data)} stack(s), device {trainer.device}, "
            f"epochs {trainer.epoch + 1}..{epochs} × {steps_per_epoch} steps."
        )
    console = Console(stderr=True)
    with Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[losses]}"),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task("train", total=steps_per_epoch, epoch=1, losses="")

        def on_step(done: int, total: int, losses: dict[str, float]) -> None:
            text = " ".join(f"{k} {v:.4f}" for k, v in losses.items())
            bar.update(task, completed=done, epoch=trainer.epoch + 1, losses=text)

        def on_epoch(log: EpochLog) -> None:
            gain = log.validation.get("mean_psnr_gain_db")
            gain_text = "n/a" if gain is None else f"{gain:+.2f} dB"
            clean = log.validation.get("mean_psnr_gain_clean_db_2_to_10um")
            if clean is not None:
                gain_text += f" (noise-free planes, 2-10 µm: {clean:+.2f} dB)"
            axial = log.validation.get("axial_error_median_um")
            axial_text = (
                ""
                if axial is None
                else f", axial error median {axial:.2f} µm (in-focal-plane "
                f"guess {log.validation.get('axial_baseline_median_um'):.2f})"
            )
            say(
                f"epoch {log.epoch}: {config.pixel_loss.upper()} "
                f"{log.loss_l1:.4f}, 1-SSIM {log.loss_ssim:.4f}, validation PSNR "
                f"gain over identity {gain_text}{axial_text} "
                f"({log.seconds:.0f} s)"
            )
            bar.reset(task)

        trainer.run(checkpoint=checkpoint, on_step=on_step, on_epoch=on_epoch)
    best = trainer.use_best()
    info = trainer.model_info(name or out.stem.split(".")[0], extra)
    if weights not in ("float32", "float16"):
        raise typer.BadParameter("--weights must be float32 or float16.")
    save_model(out, trainer.generator, info, weights_dtype=weights)
    say(f"Saved model to {out}")
    say(_training_verdict(trainer, best))


def _band_text(region: SplitRegion, origin: tuple[int, int]) -> str:
    """The held-out band of a region split in file pixels, as an evaluate option."""
    y0, x0 = origin
    if region.y_start > 0:
        rows = f"{region.y_start + y0}:{region.y_stop + y0}"
        return f"rows {rows} (deepz evaluate --y-range {rows})"
    columns = f"{region.x_start + x0}:{region.x_stop + x0}"
    return f"columns {columns} (deepz evaluate --x-range {columns})"


def _training_verdict(trainer: Trainer, best_epoch: int) -> str:
    """One honest paragraph: how the saved model compares with doing nothing."""
    score = trainer.best_score
    if score is None:
        return (
            "No validation score was computed (no held-out pairs at |dz| ≥ 1 µm): "
            "nothing shows that this model beats the identity. Evaluate it with "
            "deepz evaluate."
        )
    validation = next(
        (h.validation for h in trainer.history if h.epoch == best_epoch), {}
    )
    # the score was taken against what that validation scored (Trainer.validation_score)
    clean = validation.get("clean_targets", False)
    against = "noise-free planes" if clean else "recorded planes"
    axial = ""
    if validation.get("axial_error_median_um") is not None:
        axial = (
            f"; axial error median {validation['axial_error_median_um']:.2f} µm "
            f"(in-focal-plane guess {validation['axial_baseline_median_um']:.2f} µm)"
        )
    kept = f"Kept epoch {best_epoch} of {trainer.epoch} (best on held-out data)"
    if score > 0:
        return (
            f"{kept}: it beats the identity (the input plane) by {score:+.2f} dB "
            f"mean PSNR against held-out {against}{axial}."
        )
    return (
        f"WARNING: {kept}, but it never beat the identity: mean PSNR "
        f"{score:+.2f} dB against held-out {against}{axial}. Doing nothing "
        "predicts these planes better; the model file says so "
        "(training.beats_identity = false). More or larger stacks, or a smaller "
        "--dz-range-um, may help."
    )
