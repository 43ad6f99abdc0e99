"""``deepz train``: a Deep-Z model from z-stacks of one microscope.

`train` reads the stacks (`deepz._cli_stacks`), lets the data choose what the options
leave open (`training_defaults`: crop, refocusing range, validation split; each choice
is printed with its reason), trains with a progress bar, and ends with one honest
paragraph on whether the saved model beats doing nothing (`_training_verdict`).
Progress notes go to stderr.

Everything that can be checked is checked before the (long) training: option values,
the output (``OUT`` and its checkpoint ``OUT.ckpt`` are never replaced without
``--overwrite``; ``--resume`` continues ``OUT.ckpt`` into ``OUT``), the stacks. Ctrl-C
ends with exit code 130 and says which checkpoint is kept (`_interrupted_text`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from deepz._cli_options import (
    ChannelOption,
    CommandFailed,
    CommandInterrupted,
    DeviceOption,
    RegisterOption,
    StacksArgument,
    TargetChannelOption,
    VoxelOption,
    check_choice,
    check_output,
    check_positive,
    out_of_memory_fails,
    say,
)
from deepz._cli_stacks import read_stacks_given, read_target_stacks, voxel_from_option

if TYPE_CHECKING:
    from deepz_live.inference import EpochLog, SplitRegion, Trainer, ZStack

#: numpy and torch take seeds of 32 bits (numpy: any size, torch: at most 64 bits)
MAX_SEED = 2**32 - 1
_SMALLER_TRAINING = (
    "train with a smaller --batch-size, --crop or --base-width (or on another "
    "--device)."
)


def register(app: typer.Typer) -> None:
    """Add ``train`` to the ``deepz`` command line."""
    app.command()(train)


def train(
    stacks: StacksArgument,
    out: Annotated[
        Path, typer.Option("--out", help="Model file to write (*.safetensors).")
    ],
    epochs: Annotated[
        int, typer.Option("--epochs", min=1, help="Training epochs.")
    ] = 20,
    steps_per_epoch: Annotated[
        int, typer.Option("--steps-per-epoch", min=1, help="Batches per epoch.")
    ] = 200,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", min=1, help="Crop pairs per training step."),
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
        int, typer.Option("--base-width", min=1, help="U-Net channels at full size.")
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
            min=0,
            max=MAX_SEED,
            help="Seed of the crops, the split and the initial weights (the same "
            "seed and data repeat a run on the same machine).",
        ),
    ] = 0,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue from OUT.ckpt (the checkpoint written after each epoch) "
            "and save the model to OUT, replacing it.",
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Start afresh even if OUT or OUT.ckpt exists (both are replaced).",
        ),
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
        pick_device,
        required_multiple,
        resolve_model_path,
        save_model,
        training_defaults,
        with_overrides,
    )

    # -- option values, output and devices: checked before anything is read
    if split_by is not None:
        check_choice(split_by, "--split-by", ("stack", "region"))
    check_choice(loss, "--loss", ("l1", "l2"))
    check_choice(architecture, "--architecture", ("unet", "stack"))
    check_choice(weights, "--weights", ("float32", "float16"))
    check_positive(dz_range_um, "--dz-range-um")
    check_positive(lr, "--lr")
    check_positive(stack_step_um, "--stack-step-um")
    check_positive(camera_offset, "--camera-offset", zero=True)
    if gan is None:
        gan = architecture == "unet"
    checkpoint = Path(str(out) + ".ckpt")
    if resume and not checkpoint.is_file():
        raise typer.BadParameter(
            f"--resume: no checkpoint at {checkpoint} (it is written after each "
            "epoch); leave --resume out to start a new run."
        )
    check_output(
        out,
        # --resume continues the run that wrote OUT: its model file is replaced
        overwrite=overwrite or resume,
        inputs=stacks,
        example="model.safetensors",
    )
    if not resume and checkpoint.exists() and not overwrite:
        raise CommandFailed(
            f"{checkpoint} is the checkpoint of an earlier run into {out}: continue "
            "it with --resume, or pass --overwrite to start afresh (replacing it)."
        )
    if checkpoint.is_dir():
        raise CommandFailed(
            f"{checkpoint} is a folder; the checkpoint is written there: move it "
            "away or choose another --out."
        )
    pick_device(device)
    if init is not None and not resume:
        try:
            resolve_model_path(init)
        except InferenceError as exc:
            raise typer.BadParameter(f"--init: {exc}") from None

    # -- the data
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
    if camera_offset is not None:
        _check_camera_offset(camera_offset, data)
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
    with out_of_memory_fails(_SMALLER_TRAINING):
        try:
            trainer = Trainer(
                data, config, normalization=normalization, target_stacks=targets
            )
        except ValueError as exc:  # stacks that cannot train one model together
            raise CommandFailed(str(exc).rstrip(".") + ".") from None
    if chosen.split_by == "region":
        # in the file's pixels (registration may have cut the field), so that
        # evaluation can score exactly those
        for region in trainer.val_pairs.regions:
            say(
                "held out for validation: "
                + _band_text(region, origins[region.stack_index])
                + f" of {data[region.stack_index].source}"
            )
    if init is not None and not resume:
        try:
            trainer.initialize_from(init)
        except InferenceError as exc:
            raise typer.BadParameter(f"--init: {exc}") from None
        extra["initialized_from"] = init
    # the epoch whose checkpoint is on disk, for the message after a Ctrl-C
    saved_epoch: int | None = None
    if resume:
        trainer.load_checkpoint(checkpoint)
        saved_epoch = trainer.epoch
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

    # -- the work
    console = Console(stderr=True)
    try:
        with (
            out_of_memory_fails(_SMALLER_TRAINING),
            Progress(
                TextColumn("epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[losses]}"),
                console=console,
                transient=True,
                disable=not console.is_terminal,
            ) as bar,
        ):
            task = bar.add_task("train", total=steps_per_epoch, epoch=1, losses="")

            def on_step(done: int, total: int, losses: dict[str, float]) -> None:
                text = " ".join(f"{k} {v:.4f}" for k, v in losses.items())
                bar.update(task, completed=done, epoch=trainer.epoch + 1, losses=text)

            def on_epoch(log: EpochLog) -> None:
                nonlocal saved_epoch
                saved_epoch = log.epoch  # called after the checkpoint is written
                say(_epoch_text(log, config.pixel_loss))
                bar.reset(task)

            trainer.run(checkpoint=checkpoint, on_step=on_step, on_epoch=on_epoch)
        best = trainer.use_best()
        info = trainer.model_info(name or out.stem.split(".")[0], extra)
        save_model(out, trainer.generator, info, weights_dtype=weights)
    except KeyboardInterrupt:
        raise CommandInterrupted(
            _interrupted_text(epochs, saved_epoch, checkpoint, out)
        ) from None
    say(f"Saved model to {out}")
    say(_training_verdict(trainer, best))


def _check_camera_offset(offset: float, stacks: list[ZStack]) -> None:
    """Refuse a dark level that would leave no signal in a stack."""
    for stack in stacks:
        brightest = float(stack.data.max())
        if offset >= brightest:
            raise typer.BadParameter(
                f"--camera-offset {offset:g} is at or above the brightest pixel of "
                f"{stack.source} ({brightest:g} counts): no signal would be left. "
                "Give the camera's dark level (what it reads with no light), or "
                "leave it out."
            )


def _epoch_text(log: EpochLog, pixel_loss: str) -> str:
    """The line printed after each epoch: losses and validation scores."""
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
    return (
        f"epoch {log.epoch}: {pixel_loss.upper()} "
        f"{log.loss_l1:.4f}, 1-SSIM {log.loss_ssim:.4f}, validation PSNR "
        f"gain over identity {gain_text}{axial_text} "
        f"({log.seconds:.0f} s)"
    )


def _interrupted_text(
    epochs: int, saved_epoch: int | None, checkpoint: Path, out: Path
) -> str:
    """What a Ctrl-C during training kept, and how to go on."""
    if saved_epoch is None:
        earlier = (
            f" ({checkpoint} is still the earlier run's checkpoint)"
            if checkpoint.exists()
            else ""
        )
        return (
            "deepz train stopped by Ctrl-C before the first epoch finished: no "
            f"checkpoint was saved{earlier} and nothing was written to {out}."
        )
    then = "save the model" if saved_epoch >= epochs else "continue"
    return (
        f"deepz train stopped by Ctrl-C: the checkpoint of epoch {saved_epoch} "
        f"(of {epochs}) is {checkpoint}; run the same command with --resume to "
        f"{then} from it (nothing was written to {out})."
    )


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
