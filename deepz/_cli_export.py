"""``deepz export`` and ``deepz bench``: a model for other runtimes, and its speed.

`export` writes an ONNX graph (any batch and frame size) or a TensorRT engine (one
GPU kind, one frame shape) with its ``.json`` sidecar, never over an existing file
without ``--overwrite``; `bench` times the Refocuser per model and backend and prints
a Markdown table (or JSON with ``--json``). Options are checked before the work, and
Ctrl-C ends either with exit code 130.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path  # noqa: TC003 (typer reads the annotations at runtime)
from typing import Annotated

import typer

from deepz._cli_options import (
    CommandInterrupted,
    JsonOption,
    ModelArgument,
    OverwriteOption,
    check_choice,
    check_output,
    out_of_memory_fails,
    say,
)
from deepz_live.inference import MIN_BENCH_SIZE


def register(app: typer.Typer) -> None:
    """Add ``export`` and ``bench`` to the ``deepz`` command line."""
    app.command()(export)
    app.command()(bench)


def export(
    model: ModelArgument,
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
            min=1,
            help="tensorrt: network inputs per call (default 8 planes; 1 for "
            "stack models).",
        ),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="tensorrt: cuda, cuda:1...")
    ] = "cuda",
    overwrite: OverwriteOption = False,
) -> None:
    """Export a model for other runtimes: ONNX, or a TensorRT engine (+ .json)."""
    from deepz_live.inference import (
        export_onnx,
        export_tensorrt,
        import_tensorrt,
        pick_device,
        resolve_model_path,
        sidecar_path,
    )

    check_choice(format, "--format", ("onnx", "tensorrt"))
    if size is not None and min(size) < 1:
        raise typer.BadParameter(
            f"--size {size[0]} {size[1]}: height and width must be at least 1 px."
        )
    model_path = resolve_model_path(model)
    companions = [] if format == "onnx" else [sidecar_path(out)]
    check_output(
        out,
        overwrite=overwrite,
        companions=companions,
        inputs=[model_path],
        example=f"model.{'onnx' if format == 'onnx' else 'engine'}",
    )
    if format == "onnx":
        if size is not None or batch is not None:
            say(
                "note: --size and --batch apply to tensorrt only; "
                "the ONNX graph takes any batch and frame size."
            )
        try:
            path = export_onnx(model, out, precision=precision or "fp32")
        except KeyboardInterrupt:
            raise CommandInterrupted(_export_interrupted(out)) from None
        say(f"Exported {model} to {path}")
        return
    import_tensorrt()  # no TensorRT: say so (exit 1) before asking for anything
    if size is None:
        raise typer.BadParameter(
            "A TensorRT engine is built for one frame size: give --size H W."
        )
    pick_device(device)
    height, width = size
    say(
        f"Building a TensorRT engine for {height}×{width} frames (cached engines "
        "are reused; a new build takes minutes)..."
    )
    try:
        path = export_tensorrt(
            model,
            out,
            height=height,
            width=width,
            precision=precision or "fp16",
            batch=batch,
            device=device,
        )
    except KeyboardInterrupt:
        raise CommandInterrupted(_export_interrupted(out)) from None
    say(f"Exported {model} to {path} (described in {sidecar_path(path)})")


def _export_interrupted(out: Path) -> str:
    # every file is written aside and renamed into place: none is half-written
    return f"deepz export stopped by Ctrl-C: nothing was written to {out}."


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
        int,
        typer.Option("--size", min=MIN_BENCH_SIZE, help="Frame size (px, square)."),
    ] = 256,
    planes: Annotated[
        int, typer.Option("--planes", min=1, help="Planes per volume.")
    ] = 21,
    volumes: Annotated[
        int, typer.Option("--volumes", min=1, help="Volumes timed.")
    ] = 20,
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
        typer.Option("--precision", help="fp32; fp16 or bf16 for torch on a CUDA GPU."),
    ] = "fp32",
    json_output: JsonOption = False,
) -> None:
    """Measure volumes/s, latency and GFLOP/s of the Refocuser per backend."""
    import importlib.util
    import platform

    from deepz_live.inference import bench_all, bundled_model_names

    backends = backend or [
        b
        for b in ("torch", "onnxruntime")
        if b == "torch" or importlib.util.find_spec(b) is not None
    ]
    try:
        with out_of_memory_fails("bench a smaller --size or fewer --planes."):
            results = bench_all(
                model or bundled_model_names(), backends, size=size, planes=planes,
                volumes=volumes, device=device, precision=precision,
            )  # fmt: skip
    except KeyboardInterrupt:
        raise CommandInterrupted(
            "deepz bench stopped by Ctrl-C: no figures were printed."
        ) from None
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
