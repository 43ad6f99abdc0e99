"""``deepz evaluate``: refocus real planes of z-stacks and score a model against them.

The scores (PSNR/SSIM per |dz| bin against the identity, axial localization of
isolated objects) come from `evaluate_stacks`; this module reads the stacks as
training did (`deepz._cli_stacks`), optionally cuts them to the band of the field a
model was not trained on (``--x-range`` / ``--y-range``, in file pixels), and prints
the table (or JSON with ``--json``) on stdout, progress on stderr. Option values, the
figure's path (``--plot``: never replaced without ``--overwrite``) and the stacks are
checked before the (long) evaluation; Ctrl-C ends it with exit code 130.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path  # noqa: TC003 (typer reads the annotations at runtime)
from typing import TYPE_CHECKING, Annotated

import typer

from deepz._cli_options import (
    ChannelOption,
    CommandInterrupted,
    DeviceOption,
    JsonOption,
    ModelArgument,
    OverwriteOption,
    RegisterOption,
    StacksArgument,
    TargetChannelOption,
    VoxelOption,
    check_output,
    check_positive,
    out_of_memory_fails,
    say,
)
from deepz._cli_stacks import read_stacks_given, read_target_stacks, voxel_from_option
from deepz_live.inference import MIN_EVALUATION_WINDOW_PX

if TYPE_CHECKING:
    import numpy as np

    from deepz_live.inference import ZStack


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to the ``deepz`` command line."""
    app.command()(evaluate)


def evaluate(
    model: ModelArgument,
    stacks: StacksArgument,
    json_output: JsonOption = False,
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
            help="Score only objects with no other object this close laterally (µm).",
        ),
    ] = 2.5,
    inputs_per_stack: Annotated[
        int,
        typer.Option("--inputs-per-stack", min=1, help="Input planes per stack."),
    ] = 3,
    all_planes: Annotated[
        bool, typer.Option("--all-planes", help="Use every plane as an input.")
    ] = False,
    crop: Annotated[
        int,
        typer.Option(
            "--crop",
            min=0,
            help="Evaluate a CROP² window (0: full frame; else at least "
            f"{MIN_EVALUATION_WINDOW_PX} px, the SSIM window).",
        ),
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
    overwrite: OverwriteOption = False,
) -> None:
    """Refocus real planes of z-stacks and score the model against them.

    A cross-modality model is scored against the target channel
    (--target-channel), registered onto the input channel as in training.
    """
    import warnings

    from deepz_live.inference import (
        Normalization,
        TargetNormalization,
        check_compatibility,
        evaluate_stacks,
        load_model,
        pick_device,
        plot_evaluation,
        predict_normalized,
        resolve_model_path,
    )

    check_positive(bin_um, "--bin-um")
    check_positive(axial_range_um, "--axial-range-um")
    check_positive(isolation_um, "--isolation-um", zero=True)
    if 0 < crop < MIN_EVALUATION_WINDOW_PX:
        raise typer.BadParameter(
            f"--crop {crop}: a window must be at least {MIN_EVALUATION_WINDOW_PX} px "
            "(the SSIM window) to be scored; give a larger crop, or 0 for the full "
            "frame."
        )
    ranges = {
        option: _pixel_range(text, option)
        for option, text in (("--y-range", y_range), ("--x-range", x_range))
        if text is not None
    }
    if plot is not None:
        _check_plot_path(plot)
        check_output(
            plot,
            overwrite=overwrite,
            option="--plot",
            inputs=stacks,
            create_folder=False,
            example="evaluation.png",
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
    voxel = voxel_from_option(voxel_um)
    data = read_stacks_given(stacks, channel, voxel)
    targets = None
    origins = [(0, 0)] * len(data)
    if target_channel is not None:
        data, targets, origins, _ = read_target_stacks(
            stacks, data, channel, target_channel, voxel, register
        )
    if ranges:
        data, targets = _cut_bands(
            data,
            targets,
            origins,
            ranges.get("--y-range"),
            ranges.get("--x-range"),
            MIN_EVALUATION_WINDOW_PX,
        )
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
            say(f"warning: {stack.source}: {w.message}")

    def predict(normalized: np.ndarray, dz: np.ndarray) -> np.ndarray:
        return predict_normalized(
            generator,
            normalized,
            dz,
            dpm_scale_um=info.dpm_scale_um,
            device=torch_device,
        )

    evaluated = [0, 0]  # input planes done, of

    def progress(done: int, total: int) -> None:
        evaluated[:] = [done, total]
        say(f"evaluated input plane {done}/{total}")

    try:
        with out_of_memory_fails(
            "evaluate a smaller --crop, or fewer or smaller stacks (or on another "
            "--device)."
        ):
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
    except KeyboardInterrupt:
        done, total = evaluated
        when = (
            f"after {done} of {total} input planes"
            if done
            else "before any input plane was scored"
        )
        raise CommandInterrupted(
            f"deepz evaluate stopped by Ctrl-C {when}: no scores were printed"
            + ("" if plot is None else f" and {plot} was not written")
            + "."
        ) from None
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


_PLOT_FORMATS = (".png", ".svg", ".pdf", ".jpg", ".jpeg", ".tif", ".tiff")


def _check_plot_path(path: Path) -> None:
    """A figure format that matplotlib writes (the folder: `check_output`)."""
    if path.suffix.lower() not in _PLOT_FORMATS:
        raise typer.BadParameter(
            f"--plot {path}: unknown image format {path.suffix or '(none)'!r}; end "
            f"the name with one of {', '.join(_PLOT_FORMATS)}."
        )


def _pixel_range(text: str, option: str) -> tuple[int, int]:
    try:
        start, stop = (int(v) for v in text.split(":"))
    except ValueError:
        raise typer.BadParameter(
            f"{option} {text!r}: expected START:STOP in pixels, e.g. 66:133"
        ) from None
    if not 0 <= start < stop:
        raise typer.BadParameter(
            f"{option} {text!r}: START and STOP must be 0 ≤ START < STOP (pixels "
            "from the file's first row or column), e.g. 66:133"
        )
    return start, stop


def _cut_bands(
    data: list[ZStack],
    targets: list[ZStack] | None,
    origins: list[tuple[int, int]],
    ys: tuple[int, int] | None,
    xs: tuple[int, int] | None,
    least: int,
) -> tuple[list[ZStack], list[ZStack] | None]:
    """Rows and/or columns of each stack (and target), given in file pixels.

    Registration may have cut the field: the ranges are mapped into the overlap
    and the result is labelled in the file's own pixels. A band narrower than
    ``least`` pixels (the smallest window that can be scored) is refused.
    """
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
            if min(part.shape[1:]) < least:
                option = "--x-range" if part.shape[2] < least else "--y-range"
                raise typer.BadParameter(
                    f"{option}: the band of {whole.source} is {part.shape[1]}×"
                    f"{part.shape[2]} px; at least {least} px (the SSIM window) "
                    "are needed across it to score it. Give a wider band."
                )
            label = whole.source
            if ys is not None:
                label += f"[y={a + y0}:{b + y0}]"
            if xs is not None:
                label += f"[x={c + x0}:{d + x0}]"
            into.append(replace(part, source=label))
    return cropped, (cropped_targets if targets is not None else None)
