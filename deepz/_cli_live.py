"""``deepz acquire --model``, ``deepz refocus``, ``deepz gui``, ``deepz demo``.

``deepz acquire`` hands over to `acquire_live` when ``--model`` is given;
``deepz refocus`` refocuses a saved raw time-lapse; ``deepz gui`` opens the Qt panel
(`gui.run_panel`; Qt is imported only then, and its absence is a one-line install
hint); ``deepz demo`` opens the panel on the simulator with the default model
(``--screenshot`` runs it unattended and saves a PNG; ``--headless`` runs the same
pipeline without a window and prints the summary).
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from deepz_live.acquisition import POLICIES, POLICY_DESCRIPTIONS, DeepzError, RunPlan
from deepz_live.inference import LIVE_MODEL_NAME

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from deepz_live.acquisition import LiveStats, LiveSummary, Microscope, Policy

_stderr = Console(stderr=True)

PlanesOption = Annotated[
    str | None,
    typer.Option(
        "--planes",
        metavar="START:STOP:STEP",
        help="Planes of each volume, µm from the focus, STOP included (-8:8:2 gives "
        "9 planes), or a list A,B,C. Default: every 2 µm within ±80 % of the "
        "model's range.",
        show_default=False,
    ),
]
PolicyOption = Annotated[
    str,
    typer.Option(
        "--policy",
        help="; ".join(f"{k}: {v}" for k, v in POLICY_DESCRIPTIONS.items()) + ".",
    ),
]
SaveVolumesOption = Annotated[
    bool,
    typer.Option(
        "--save-volumes",
        help="Save the volumes next to the raw file (*.volumes.ome.tif, or "
        ".ome.zarr for a Zarr raw file).",
    ),
]
BackendOption = Annotated[
    str,
    typer.Option(
        "--backend",
        help="Refocuser backend: auto, torch, onnxruntime, tensorrt (NVIDIA GPUs).",
    ),
]
DeviceOption = Annotated[
    str,
    typer.Option(
        "--device",
        help="Where to refocus: cpu, cuda, cuda:1..., or auto (CUDA when there is "
        "one, else the CPU).",
    ),
]
MismatchOption = Annotated[
    bool,
    typer.Option(
        "--allow-model-mismatch",
        help="Refocus even if the model was trained at another pixel size, NA or "
        "wavelength than this microscope's (otherwise an error before any frame).",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON summary on stdout.")
]
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="Replace existing output files.")
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Micro-Manager .cfg file. Default: the simulated microscope.",
        show_default=False,
    ),
]
LiveModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        help="Deep-Z model: a bundled name (default-fast, default) or a "
        ".safetensors file.",
    ),
]


class LiveUsageError(DeepzError):
    """A live-refocusing option that makes no sense (exit code 2)."""


def check_policy(policy: str) -> Policy:
    """The policy, or a usage error naming the choices."""
    if policy not in POLICIES:
        choices = "; ".join(f"{k} ({v})" for k, v in POLICY_DESCRIPTIONS.items())
        raise LiveUsageError(f"--policy {policy!r}: choose {choices}.")
    return policy


def planes_from_option(text: str | None) -> tuple[float, ...] | None:
    """Parse ``--planes``; a usage error for malformed text."""
    from deepz_live.acquisition import parse_planes

    if text is None:
        return None
    try:
        return parse_planes(text)
    except ValueError as exc:
        raise LiveUsageError(f"--planes {exc}") from None


def run_plan(**fields: Any) -> RunPlan:
    """The `RunPlan` of the options, or a usage error naming the option and why."""
    from pydantic import ValidationError

    try:
        return RunPlan(**fields)
    except ValidationError as error:
        first = error.errors()[0]
        option = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else ""
        raise LiveUsageError(f"{option}: {first['msg']}.") from None


def acquire_live(scope: Microscope, plan: RunPlan, *, json_output: bool) -> LiveSummary:
    """Run a live session (``deepz acquire --model``, ``deepz demo --headless``)
    with a progress display."""
    from deepz_live.live import live_refocus

    session = live_refocus(scope, plan, start=False)
    with session, _live_progress(json_output, plan.policy) as report:
        session.start()
        return session.wait(progress=report)


def live_summary_text(summary: LiveSummary) -> str:
    """The human summary of a live run."""
    fps = "n/a" if summary.fps is None else f"{summary.fps:.1f}"
    planes = summary.planes_um
    lines = [f"Saved {summary.frames} frames to {summary.raw_output} ({fps} fps)."]
    where = (
        f" to {summary.volume_output}"
        if summary.volume_output is not None
        else " (not saved; --save-volumes saves them)"
    )
    lines.append(
        f"Refocused {summary.volumes} volumes of {len(planes)} planes "
        f"({planes[0]:g} to {planes[-1]:g} µm){where}; {summary.skipped} frames "
        f"skipped (policy {summary.policy})."
    )
    if summary.volumes:
        lines.append(
            f"Volumes/s {summary.volumes_per_s or 0:.3g}; latency frame → volume "
            f"p50 {summary.latency_p50_ms or 0:.0f} ms, p99 "
            f"{summary.latency_p99_ms or 0:.0f} ms."
        )
    if summary.canceled:
        lines.append("The run was stopped before the end.")
    if summary.dose_total_J_cm2 is None:
        lines.append("Light dose: not reported by this camera.")
    else:
        lines.append(
            f"Light dose: {summary.dose_per_frame_J_cm2:.3g} J/cm² per frame, "
            f"{summary.dose_total_J_cm2:.3g} J/cm² in total; the same run as "
            f"{summary.zstack_planes}-plane z-stacks would take "
            f"{summary.equivalent_zstack_dose_J_cm2:.3g} J/cm²."
        )
    return "\n".join(lines)


@contextmanager
def _live_progress(
    quiet: bool, policy: str
) -> Iterator[Callable[[LiveStats], None] | None]:
    """Frames acquired and volumes made, on stderr, when stderr is a terminal."""
    if not _stderr.is_terminal:
        yield None
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
        console=_stderr,
        transient=True,
    ) as bar:
        frames = bar.add_task("Acquiring ", total=None, detail="")
        volumes = bar.add_task("Refocusing", total=None, detail="")

        def report(stats: LiveStats) -> None:
            bar.update(
                frames,
                completed=stats.frames_acquired,
                total=stats.frames_expected,
                detail=_rate_text(stats.frames_per_s, "frames/s"),
            )
            latency = (
                ""
                if stats.latency_p50_ms is None
                else f" · p50 {stats.latency_p50_ms:.0f} ms"
            )
            bar.update(
                volumes,
                completed=stats.volumes,
                total=stats.frames_expected if policy == "all" else None,
                detail=f"{_rate_text(stats.volumes_per_s, 'vol/s')}{latency} · "
                f"queue {stats.queue_depth} · skipped {stats.skipped}",
            )

        yield report


def _rate_text(rate: float | None, unit: str) -> str:
    return f"{rate:.3g} {unit}" if rate is not None else f"– {unit}"


def _print_json(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


# -- deepz refocus -------------------------------------------------------------------
def refocus(
    model: Annotated[
        str, typer.Argument(help="Model: 'default' (bundled) or a .safetensors file.")
    ],
    raw: Annotated[
        Path, typer.Argument(help="Raw time-lapse (*.ome.tif or *.ome.zarr).")
    ],
    planes: PlanesOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Volume file (*.ome.tif or *.ome.zarr). Default: next to RAW, "
            "*.volumes.ome.tif.",
            show_default=False,
        ),
    ] = None,
    backend: BackendOption = "auto",
    device: DeviceOption = "cpu",
    pixel_size_um: Annotated[
        float | None,
        typer.Option(
            "--pixel-size-um",
            help="Sample-plane pixel size of RAW's frames (µm), for a file that "
            "does not record it (e.g. from a killed run) or records it wrongly.",
            show_default=False,
        ),
    ] = None,
    allow_model_mismatch: Annotated[
        bool,
        typer.Option(
            "--allow-model-mismatch",
            help="Refocus even if the model was trained at another pixel size, NA "
            "or wavelength than RAW's, or RAW's pixel size is unknown (otherwise an "
            "error before any frame).",
        ),
    ] = False,
    overwrite: OverwriteOption = False,
    json_output: JsonOption = False,
) -> None:
    """Refocus every frame of a saved raw time-lapse into a volume file."""
    from deepz_live.live import refocus_file

    if pixel_size_um is not None and not (
        math.isfinite(pixel_size_um) and pixel_size_um > 0
    ):
        raise LiveUsageError(
            f"--pixel-size-um {pixel_size_um:g}: give the pixel size at the sample "
            "in µm, a positive number (e.g. 0.325)."
        )
    with progress_bar("Refocusing") as report, _one_line_warnings():
        summary = refocus_file(
            model,
            raw,
            planes_um=planes_from_option(planes),
            out=out,
            backend=backend,
            device=device,
            overwrite=overwrite,
            pixel_size_um=pixel_size_um,
            allow_model_mismatch=allow_model_mismatch,
            progress=report,
        )
    if json_output:
        _print_json(summary.to_dict())
        return
    rate = "n/a" if summary.volumes_per_s is None else f"{summary.volumes_per_s:.3g}"
    typer.echo(
        f"Refocused {summary.volumes} frames of {summary.raw} into "
        f"{len(summary.planes_um)}-plane volumes: {summary.output} "
        f"({rate} volumes/s)."
    )


@contextmanager
def _one_line_warnings() -> Iterator[None]:
    """deepz's own warnings about the data and the model as ``deepz: warning: ...``
    lines on stderr; other warnings as before."""
    from deepz_live.inference import ModelMismatchWarning, ModelQualityWarning

    with warnings.catch_warnings():
        previous = warnings.showwarning

        def show(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
            if issubclass(category, (ModelMismatchWarning, ModelQualityWarning)):
                text = " ".join(str(message).split())
                sys.stderr.write(f"deepz: warning: {text}\n")
            else:
                previous(message, category, *args, **kwargs)

        warnings.showwarning = show
        yield


@contextmanager
def progress_bar(
    description: str = "Refocusing",
) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr when it is a terminal; yields ``report(done,
    total)`` (or None, when there is no terminal to draw on)."""
    if not _stderr.is_terminal:
        yield None
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=_stderr,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield report


# -- deepz gui / deepz demo -----------------------------------------------------------
GUI_INSTALL_HINT = (
    'The deepz panel needs Qt: install it with  pip install "deepz-live[gui]"'
)


class PanelUnavailable(DeepzError):
    """The panel's packages (Qt, vispy...) are not installed (exit code 1)."""


def _panel_module() -> Any:
    """The `gui` package, or `PanelUnavailable` with the one-line install hint."""
    try:
        import deepz_live.gui as gui
    except ImportError as error:  # gui.QtMissingError included
        text = " ".join(str(error).split())
        if "deepz-live[gui]" not in text:
            text = f"{GUI_INSTALL_HINT} ({text})"
        raise PanelUnavailable(text) from None
    return gui


def gui_command(
    config: ConfigOption = None,
    model: LiveModelOption = LIVE_MODEL_NAME,
    roi: Annotated[
        int,
        typer.Option(
            "--roi",
            help="Centred square camera region in pixels (smaller refocuses faster); "
            "0 = the full sensor.",
        ),
    ] = 0,
) -> None:
    """Open the live panel: acquire, refocus and watch the virtual volumes."""
    if roi < 0:
        raise LiveUsageError(f"--roi {roi}: choose 0 (full sensor) or a size ≥ 16.")
    panel = _panel_module()
    status = panel.run_panel(config=config, model=model, roi=roi)
    if status:
        raise SystemExit(status)


def demo(
    config: ConfigOption = None,
    model: LiveModelOption = LIVE_MODEL_NAME,
    headless: Annotated[
        bool,
        typer.Option(
            "--headless",
            help="No window: run the pipeline and print the summary.",
        ),
    ] = False,
    screenshot: Annotated[
        Path | None,
        typer.Option(
            "--screenshot",
            metavar="PNG",
            help="Run --frames frames in the panel, save a PNG of it here and exit "
            "(OpenGL views need a display: xvfb-run -a on a server).",
            show_default=False,
        ),
    ] = None,
    frames: Annotated[int, typer.Option("--frames", help="Number of frames.")] = 50,
    interval_ms: Annotated[
        float, typer.Option("--interval-ms", help="Time between frames (ms).")
    ] = 100.0,
    planes: PlanesOption = "-8:8:2",
    policy: PolicyOption = "latest",
    roi: Annotated[
        int,
        typer.Option(
            "--roi",
            help="Centred square camera region in pixels (smaller refocuses faster); "
            "0 = the full 512×512 sensor.",
        ),
    ] = 0,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Raw output. Default: runs/<timestamp>-demo.ome.tif",
            show_default=False,
        ),
    ] = None,
    save_volumes: SaveVolumesOption = False,
    backend: BackendOption = "auto",
    json_output: JsonOption = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace an existing --out file (--headless; the panel never "
            "replaces a file, it numbers the new one).",
        ),
    ] = False,
) -> None:
    """The simulated worm refocused live by the live model, in the panel.

    With --config, the same on your own microscope (the focus stays where it is).
    """
    plan = run_plan(
        config=config,
        model=model,
        planes_um=planes_from_option(planes),
        policy=check_policy(policy),
        frames=frames,
        interval_ms=interval_ms,
        exposure_ms=10.0,
        out=out
        or Path("runs") / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-demo.ome.tif",
        save_volumes=save_volumes,
        backend=backend,
        overwrite=overwrite,
    )
    if headless and screenshot is not None:
        raise LiveUsageError("--screenshot shows the panel: leave out --headless.")
    if json_output and not headless:
        raise LiveUsageError("--json needs --headless (the panel prints no summary).")
    if not headless:
        if roi and roi < 16:
            raise LiveUsageError(f"--roi {roi}: choose 16 pixels or more (0 = full).")
        panel = _panel_module()
        # the plan's own fields; config, model and frames go to run_panel itself
        shown = plan.model_dump(
            include={"interval_ms", "policy", "backend", "out", "save_volumes"}
            | {"exposure_ms"}
            | ({"planes_um"} if plan.planes_um is not None else set())
        )
        status = panel.run_panel(
            config=config,
            model=plan.model,
            demo=config is None,
            screenshot=screenshot,
            frames=frames,
            roi=roi,
            settings=shown,
        )
        if status:
            raise SystemExit(status)
        if screenshot is not None:
            typer.echo(f"Saved a screenshot of the panel to {screenshot}.")
        return
    from deepz_live.acquisition import open_microscope

    with open_microscope(config) as scope:
        if roi:
            _centred_roi(scope, roi)
        scope.focus_on_specimen()
        summary = acquire_live(scope, plan, json_output=json_output)
    if json_output:
        _print_json(summary.to_dict())
        return
    typer.echo(live_summary_text(summary))


def _centred_roi(scope: Microscope, size: int) -> None:
    core = scope.core
    width, height = int(core.getImageWidth()), int(core.getImageHeight())
    if not 16 <= size <= min(width, height):
        raise LiveUsageError(
            f"--roi {size}: choose 16 to {min(width, height)} pixels (0 = full)."
        )
    core.setROI((width - size) // 2, (height - size) // 2, size, size)


def register(app: typer.Typer) -> None:
    """Add ``refocus``, ``gui`` and ``demo`` to the ``deepz`` command line."""
    app.command()(refocus)
    app.command(name="gui")(gui_command)
    app.command()(demo)
