"""``deepz train`` and ``deepz evaluate``: Deep-Z models from z-stacks."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from deepz_live.inference import ZStack
    from deepz_live.inference._pairs import SplitRegion
    from deepz_live.inference._train import Trainer

StacksArgument = Annotated[
    list[Path],
    typer.Argument(
        help="Z-stack files (OME-TIFF or ImageJ TIFF: ZYX, TZYX, ZCYX with --channel)."
    ),
]
ChannelOption = Annotated[
    int | None,
    typer.Option("--channel", help="Channel to use from multi-channel stacks."),
]
VoxelOption = Annotated[
    str | None,
    typer.Option(
        "--voxel-um",
        metavar="Z,Y,X",
        help="Voxel size in µm, for files without it (overrides the file).",
    ),
]
DeviceOption = Annotated[
    str,
    typer.Option(
        "--device",
        help="Where to run: auto (CUDA when there is one, else the CPU), cpu, cuda, "
        "cuda:1...",
    ),
]
TargetChannelOption = Annotated[
    int | None,
    typer.Option(
        "--target-channel",
        help="Cross-modality: take the target from this channel of the same files "
        "(e.g. confocal), the input from --channel (e.g. widefield).",
    ),
]
RegisterOption = Annotated[
    bool,
    typer.Option(
        "--register/--no-register",
        help="With --target-channel: register the target channel onto the input "
        "channel (3-D sub-pixel shift) and crop both to their overlap.",
    ),
]


def _voxel(text: str | None) -> tuple[float, float, float] | None:
    if text is None:
        return None
    try:
        z, y, x = (float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(
            f"--voxel-um {text!r}: expected three numbers Z,Y,X in µm, "
            "e.g. 0.5,0.325,0.325"
        ) from None
    if min(z, y, x) <= 0:
        raise typer.BadParameter("--voxel-um values must be positive.")
    return z, y, x


def _pixel_range(text: str, option: str) -> tuple[int, int]:
    try:
        start, stop = (int(v) for v in text.split(":"))
    except ValueError:
        raise typer.BadParameter(
            f"{option} {text!r}: expected START:STOP in pixels, e.g. 66:133"
        ) from None
    return start, stop


def _read_all(
    paths: list[Path], channel: int | None, voxel: tuple[float, float, float] | None
) -> list[ZStack]:
    from deepz_live.inference import read_stacks

    given = {p.expanduser().absolute() for p in paths}
    stacks: list[ZStack] = []
    for path in paths:
        name = path.name
        if ".clean." in name:
            recorded = path.with_name(name.replace(".clean.", ".", 1))
            if recorded.expanduser().absolute() in given:
                # a shell glob picks up the noise-free twins too: they are read
                # with their recorded stack (ZStack.clean), not as data of their own
                continue
        stacks.extend(read_stacks(path, channel=channel, voxel_um=voxel))
    return stacks


_PLOT_FORMATS = (".png", ".svg", ".pdf", ".jpg", ".jpeg", ".tif", ".tiff")


def _check_plot_path(path: Path) -> None:
    """A figure path that will work, checked before any (long) evaluation."""
    if path.suffix.lower() not in _PLOT_FORMATS:
        raise typer.BadParameter(
            f"--plot {path}: unknown image format {path.suffix or '(none)'!r}; end "
            f"the name with one of {', '.join(_PLOT_FORMATS)}."
        )
    folder = path.expanduser().absolute().parent
    if not folder.is_dir():
        raise typer.BadParameter(
            f"--plot {path}: folder {folder} does not exist; create it first."
        )


def _band_text(region: SplitRegion, origin: tuple[int, int]) -> str:
    """The held-out band of a region split in file pixels, as an evaluate option."""
    y0, x0 = origin
    if region.y_start > 0:
        rows = f"{region.y_start + y0}:{region.y_stop + y0}"
        return f"rows {rows} (deepz evaluate --y-range {rows})"
    columns = f"{region.x_start + x0}:{region.x_stop + x0}"
    return f"columns {columns} (deepz evaluate --x-range {columns})"


def _cut_bands(
    data: list[ZStack],
    targets: list[ZStack] | None,
    origins: list[tuple[int, int]],
    y_range: str | None,
    x_range: str | None,
) -> tuple[list[ZStack], list[ZStack] | None]:
    """Rows and/or columns of each stack (and target), given in file pixels.

    Registration may have cut the field: the ranges are mapped into the overlap
    and the result is labelled in the file's own pixels.
    """
    ys = None if y_range is None else _pixel_range(y_range, "--y-range")
    xs = None if x_range is None else _pixel_range(x_range, "--x-range")
    cropped: list[ZStack] = []
    cropped_targets: list[ZStack] = []
    for k, stack in enumerate(data):
        (y0, x0), (_, height, width) = origins[k], stack.shape
        a, b = (
            (0, height) if ys is None else (max(ys[0] - y0, 0), min(ys[1] - y0, height))
        )
        c, d = (
            (0, width) if xs is None else (max(xs[0] - x0, 0), min(xs[1] - x0, width))
        )
        pairs = [(stack, cropped)]
        if targets is not None:
            pairs.append((targets[k], cropped_targets))
        for whole, into in pairs:
            try:
                part = whole.crop(a, b, c, d)
            except ValueError as exc:
                option = "--x-range" if ys is None else "--y-range"
                raise typer.BadParameter(f"{option}: {exc}") from None
            label = whole.source
            if ys is not None:
                label += f"[y={a + y0}:{b + y0}]"
            if xs is not None:
                label += f"[x={c + x0}:{d + x0}]"
            into.append(replace(part, source=label))
    return cropped, (cropped_targets if targets is not None else None)


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


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _read_targets(
    paths: list[Path],
    inputs: list[ZStack],
    channel: int | None,
    target_channel: int,
    voxel: tuple[float, float, float] | None,
    register: bool,
) -> tuple[list[ZStack], list[ZStack], list[tuple[int, int]], list[dict]]:
    """Target stacks paired with ``inputs``, registered onto them if asked.

    Returns the inputs and targets (cropped to their overlap when registered), per
    pair the file column that became column 0 (to map column ranges), and per pair
    the shift found, for the model's provenance. Origins are ``(row, column)`` of
    the file that became ``(0, 0)``.
    """
    from deepz_live.inference._register import register_pair, valid_slices

    if channel is None:
        raise typer.BadParameter(
            "--target-channel needs --channel: the input channel (e.g. widefield) "
            "of the same files."
        )
    if channel == target_channel:
        raise typer.BadParameter(
            f"--channel and --target-channel are both {channel}; the target must be "
            "another channel (e.g. --channel 1 --target-channel 0)."
        )
    targets = _read_all(paths, target_channel, voxel)
    if len(targets) != len(inputs):
        raise typer.BadParameter(
            f"{len(inputs)} input stacks but {len(targets)} target stacks."
        )
    out_inputs, out_targets, origins, shifts = [], [], [], []
    for stack, target in zip(inputs, targets, strict=True):
        origin = (0, 0)
        shift = (0.0, 0.0, 0.0)
        source = target.source
        if register:
            shape = stack.shape
            try:
                stack, target, shift = register_pair(stack, target)
            except ValueError as exc:
                raise typer.BadParameter(f"--register: {exc}") from None
            overlap = valid_slices(shape, shift)
            origin = (overlap[1].start, overlap[2].start)
            _say(
                f"registered {target.source} onto {stack.source}: shift "
                f"dz {shift[0]:+.2f} planes, dy {shift[1]:+.2f} px, dx "
                f"{shift[2]:+.2f} px (overlap {stack.shape[0]} planes × "
                f"{stack.shape[1]}×{stack.shape[2]} px)"
            )
        out_inputs.append(stack)
        out_targets.append(target)
        origins.append(origin)
        shifts.append({"source": source, "shift_zyx": list(shift)})
    return out_inputs, out_targets, origins, shifts


def register(app: typer.Typer) -> None:
    """Add the model commands to the ``deepz`` app."""

    @app.command()
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

        from deepz_live.inference import InferenceError, save_model
        from deepz_live.inference._defaults import training_defaults
        from deepz_live.inference._networks import (
            DiscriminatorConfig,
            GeneratorConfig,
            required_multiple,
        )
        from deepz_live.inference._train import TrainConfig, Trainer, with_overrides

        if split_by not in (None, "stack", "region"):
            raise typer.BadParameter("--split-by must be 'stack' or 'region'.")
        if loss not in ("l1", "l2"):
            raise typer.BadParameter("--loss must be 'l1' or 'l2'.")
        if architecture not in ("unet", "stack"):
            raise typer.BadParameter("--architecture must be 'unet' or 'stack'.")
        if gan is None:
            gan = architecture == "unet"
        voxel = _voxel(voxel_um)
        data = _read_all(stacks, channel, voxel)
        targets = None
        origins = [(0, 0)] * len(data)
        extra: dict = {"command": " ".join(["deepz", *sys.argv[1:]])}
        if target_channel is not None:
            data, targets, origins, shifts = _read_targets(
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
            _say(f"chosen from the data: {reason}")
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
        from deepz_live.inference import Normalization

        normalization = (
            None if camera_offset is None else Normalization(offset=camera_offset)
        )
        trainer = Trainer(
            data, config, normalization=normalization, target_stacks=targets
        )
        if chosen.split_by == "region":
            # in the file's pixels (registration may have cut the field), so that
            # evaluation can score exactly those
            for region in trainer.val_pairs.regions:
                _say(
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
            _say(
                f"The checkpoint is at epoch {trainer.epoch} (≥ --epochs {epochs}): "
                "nothing to train, saving the model."
            )
        else:
            _say(
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

            def on_epoch(log) -> None:  # type: ignore[no-untyped-def]
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
                _say(
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
        _say(f"Saved model to {out}")
        _say(_training_verdict(trainer, best))

    @app.command()
    def export(
        model: Annotated[
            str, typer.Argument(help="Model file, or the name of a bundled model.")
        ],
        out: Annotated[Path, typer.Option("--out", help="File to write.")],
        format: Annotated[
            str,
            typer.Option(
                "--format",
                help="onnx (any batch and size; runs anywhere) or tensorrt (an "
                "engine for one GPU kind and TensorRT version, one fixed shape).",
            ),
        ] = "onnx",
        precision: Annotated[
            str | None,
            typer.Option(
                "--precision",
                help="fp32, fp16 or bf16 (bf16: compute capability ≥ 8.0). Default: "
                "fp32 for onnx, fp16 for tensorrt.",
            ),
        ] = None,
        size: Annotated[
            tuple[int, int] | None,
            typer.Option(
                "--size",
                metavar="H W",
                help="tensorrt (required): frame height and width (px) to build the "
                "engine for; rounded up to the network's multiple.",
            ),
        ] = None,
        batch: Annotated[
            int | None,
            typer.Option(
                "--batch",
                help="tensorrt: network inputs per call (default 8 planes; 1 for "
                "stack models).",
            ),
        ] = None,
        device: Annotated[
            str, typer.Option("--device", help="tensorrt: cuda, cuda:1...")
        ] = "cuda",
    ) -> None:
        """Export a model for other runtimes: ONNX, or a TensorRT engine (+ .json)."""
        from deepz_live.inference import export_onnx

        if format not in ("onnx", "tensorrt"):
            raise typer.BadParameter("--format must be onnx or tensorrt.")
        if format == "onnx":
            if size is not None or batch:
                _say(
                    "note: --size and --batch apply to tensorrt only; "
                    "the ONNX graph takes any batch and frame size."
                )
            path = export_onnx(model, out, precision=precision or "fp32")
            _say(f"Exported {model} to {path}")
            return
        from deepz_live.inference._tensorrt import (
            export_tensorrt,
            import_tensorrt,
            sidecar_path,
        )

        import_tensorrt()  # no TensorRT: say so (exit 1) before asking for anything
        if size is None:
            raise typer.BadParameter(
                "A TensorRT engine is built for one frame size: give --size H W."
            )
        height, width = size
        _say(
            f"Building a TensorRT engine for {height}×{width} frames (cached engines "
            "are reused; a new build takes minutes)..."
        )
        path = export_tensorrt(
            model,
            out,
            height=height,
            width=width,
            precision=precision or "fp16",
            batch=batch,
            device=device,
        )
        _say(f"Exported {model} to {path} (described in {sidecar_path(path)})")

    @app.command()
    def bench(
        model: Annotated[
            list[str] | None,
            typer.Option(
                "--model",
                help="Model name or file (repeatable; default: every bundled model).",
            ),
        ] = None,
        backend: Annotated[
            list[str] | None,
            typer.Option(
                "--backend",
                help="torch, onnxruntime, tensorrt (NVIDIA GPU: with --device cuda) "
                "or auto (repeatable; default: torch, and onnxruntime when "
                "installed).",
            ),
        ] = None,
        size: Annotated[
            int, typer.Option("--size", help="Frame size (px, square).")
        ] = 256,
        planes: Annotated[
            int, typer.Option("--planes", help="Planes per volume.")
        ] = 21,
        volumes: Annotated[int, typer.Option("--volumes", help="Volumes timed.")] = 20,
        device: Annotated[
            str,
            typer.Option(
                "--device",
                help="Where to run: cpu, cuda, cuda:1..., or auto (CUDA when there is "
                "one).",
            ),
        ] = "cpu",
        precision: Annotated[
            str,
            typer.Option(
                "--precision", help="fp32; fp16 or bf16 for torch on a CUDA GPU."
            ),
        ] = "fp32",
        json_output: Annotated[
            bool, typer.Option("--json", help="JSON on stdout.")
        ] = False,
    ) -> None:
        """Measure volumes/s, latency and GFLOP/s of the Refocuser per backend."""
        import importlib.util
        import platform

        from deepz_live.inference import bundled_model_names
        from deepz_live.inference._bench import bench_all

        backends = backend or [
            b
            for b in ("torch", "onnxruntime")
            if b == "torch" or importlib.util.find_spec(b) is not None
        ]
        results = bench_all(
            model or bundled_model_names(), backends, size=size, planes=planes,
            volumes=volumes, device=device, precision=precision,
        )  # fmt: skip
        if json_output:
            sys.stdout.write(json.dumps([r.to_dict() for r in results]) + "\n")
            return
        import os

        sys.stdout.write(
            f"Refocuser, {size}×{size} × {planes} planes, {volumes} volumes, "
            f"{platform.machine()} with {os.cpu_count()} CPUs\n"
            "| model | backend | volumes/s | planes/s | p50 ms | p99 ms | "
            "GFLOP/volume | GFLOP/s |\n|---|---|---|---|---|---|---|---|\n"
        )
        for r in results:
            sys.stdout.write(
                f"| {r.model} | {r.backend} ({r.device}, {r.precision}) | "
                f"{r.volumes_per_s:.2f} | "
                f"{r.plane_inferences_per_s:.1f} | {r.latency_p50_ms:.0f} | "
                f"{r.latency_p99_ms:.0f} | {r.gflop_per_volume:.1f} | "
                f"{r.achieved_gflop_per_s:.1f} |\n"
            )

    @app.command()
    def evaluate(
        model: Annotated[
            str, typer.Argument(help="Model file, or the name of a bundled model.")
        ],
        stacks: StacksArgument,
        json_output: Annotated[
            bool, typer.Option("--json", help="JSON on stdout.")
        ] = False,
        plot: Annotated[
            Path | None,
            typer.Option(
                "--plot",
                help="Save a figure (PNG, SVG or PDF): PSNR/SSIM and axial error vs "
                "|dz|, and XZ/YZ sections (scan | model | identity) through a few "
                "objects.",
            ),
        ] = None,
        bin_um: Annotated[
            float | None,
            typer.Option(
                "--bin-um",
                help="Width of the |dz| bins (µm). Default: the depth of field from "
                "the stacks' NA and wavelength, to 0.5 µm (1 µm at 20x/0.75), else 1.",
                show_default=False,
            ),
        ] = None,
        axial_range_um: Annotated[
            float | None,
            typer.Option(
                "--axial-range-um",
                help="Score the axial localization of objects up to this far from "
                "the input plane (µm), at most the model's range. Default: the "
                "model's range minus 3 µm (at least 1 µm).",
                show_default=False,
            ),
        ] = None,
        isolation_um: Annotated[
            float,
            typer.Option(
                "--isolation-um",
                help="Score only objects with no other object this close laterally "
                "(µm).",
            ),
        ] = 2.5,
        inputs_per_stack: Annotated[
            int, typer.Option("--inputs-per-stack", help="Input planes per stack.")
        ] = 3,
        all_planes: Annotated[
            bool, typer.Option("--all-planes", help="Use every plane as an input.")
        ] = False,
        crop: Annotated[
            int, typer.Option("--crop", help="Evaluate a CROP² window (0: full frame).")
        ] = 256,
        x_range: Annotated[
            str | None,
            typer.Option(
                "--x-range",
                metavar="START:STOP",
                help="Only these columns (px) of each stack, e.g. the band of the "
                "field a model was not trained on (deepz train names it).",
            ),
        ] = None,
        y_range: Annotated[
            str | None,
            typer.Option(
                "--y-range",
                metavar="START:STOP",
                help="Only these rows (px) of each stack (a held-out band of rows).",
            ),
        ] = None,
        channel: ChannelOption = None,
        target_channel: TargetChannelOption = None,
        register: RegisterOption = True,
        voxel_um: VoxelOption = None,
        device: DeviceOption = "auto",
    ) -> None:
        """Refocus real planes of z-stacks and score the model against them.

        A cross-modality model is scored against the target channel
        (--target-channel), registered onto the input channel as in training.
        """
        import warnings

        from deepz_live.inference import (
            check_compatibility,
            load_model,
            resolve_model_path,
        )
        from deepz_live.inference._apply import predict_normalized
        from deepz_live.inference._evaluate import evaluate_stacks, plot_evaluation
        from deepz_live.inference._normalize import Normalization
        from deepz_live.inference._pairs import TargetNormalization
        from deepz_live.inference._train import pick_device

        if plot is not None:
            _check_plot_path(plot)
        if bin_um is not None and not (math.isfinite(bin_um) and bin_um > 0):
            raise typer.BadParameter(f"--bin-um must be more than 0, got {bin_um}.")
        if axial_range_um is not None and not (
            math.isfinite(axial_range_um) and axial_range_um > 0
        ):
            raise typer.BadParameter(
                f"--axial-range-um must be more than 0, got {axial_range_um}."
            )
        torch_device = pick_device(device)
        path = resolve_model_path(model)
        generator, info = load_model(path, device=str(torch_device))
        cross = info.training.get("cross_modality")
        saved_target = info.training.get("target_normalization")
        if saved_target is not None and target_channel is None:
            channels = (
                f" (input channel {cross.get('input_channel')}, target channel "
                f"{cross.get('target_channel')})"
                if isinstance(cross, dict)
                else ""
            )
            raise typer.BadParameter(
                f"{path.name} is a cross-modality model{channels}: it predicts "
                "another modality, so scoring it against the input's own planes "
                "means nothing. Pass --channel and --target-channel."
            )
        if saved_target is None and target_channel is not None:
            raise typer.BadParameter(
                f"{path.name} was trained to refocus within one modality; "
                "--target-channel is for cross-modality models."
            )
        voxel = _voxel(voxel_um)
        data = _read_all(stacks, channel, voxel)
        targets = None
        origins = [(0, 0)] * len(data)
        if target_channel is not None:
            data, targets, origins, _ = _read_targets(
                stacks, data, channel, target_channel, voxel, register
            )
        if x_range is not None or y_range is not None:
            data, targets = _cut_bands(data, targets, origins, y_range, x_range)
        notes: list[str] = []
        for stack in data:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                check_compatibility(
                    info,
                    pixel_size_um=stack.pixel_um[1],
                    wavelength_um=stack.wavelength_um,
                )
            for w in caught:
                notes.append(f"{stack.source}: {w.message}")
                _say(f"warning: {stack.source}: {w.message}")

        def predict(normalized, dz):  # type: ignore[no-untyped-def]
            return predict_normalized(
                generator,
                normalized,
                dz,
                dpm_scale_um=info.dpm_scale_um,
                device=torch_device,
            )

        def progress(done: int, total: int) -> None:
            _say(f"evaluated input plane {done}/{total}")

        result = evaluate_stacks(
            predict,
            data,
            Normalization.from_dict(info.normalization),
            dz_range_um=info.dz_range_um,
            inputs_per_stack=None if all_planes else inputs_per_stack,
            crop=crop or None,
            model_name=info.name,
            progress=progress,
            target_stacks=targets,
            target_normalization=(
                None
                if saved_target is None
                else TargetNormalization.from_dict(saved_target)
            ),
            bin_um=bin_um,
            axial_range_um=axial_range_um,
            isolation_um=isolation_um,
            sections=3 if plot is not None else 0,
        )
        result.notes.extend(notes)
        if plot is not None:
            plot_evaluation(result, plot)
        if json_output:
            sys.stdout.write(json.dumps(result.to_dict()) + "\n")
            return
        sys.stdout.write(result.table() + "\n")
        axial = result.axial()
        if axial["axial_error_median_um"] is not None:
            sys.stdout.write(
                f"Axial localization ({axial['axial_objects']} objects within "
                f"±{result.axial_range_um:.3g} µm of the input plane): median error "
                f"{axial['axial_error_median_um']:.2f} µm, "
                f"{axial['axial_within_1um_fraction']:.0%} within 1 µm; everything "
                f"in the focal plane: {axial['axial_baseline_median_um']:.2f} µm, "
                f"{axial['axial_baseline_within_1um_fraction']:.0%}.\n"
            )
        gain = result.mean_psnr_gain_db(2.0, 10.0)
        if gain is not None:
            sys.stdout.write(f"Mean PSNR gain over 2 ≤ |dz| ≤ 10 µm: {gain:+.2f} dB\n")
        gain_clean = result.mean_psnr_gain_db(2.0, 10.0, clean=True)
        if gain_clean is not None:
            sys.stdout.write(f"Against the noise-free planes: {gain_clean:+.2f} dB\n")
