"""The ``deepz`` command line.

``deepz acquire`` records a time-lapse and ``deepz zstack`` a z-stack, each into an
OME-TIFF, on the simulated microscope by default or on any Micro-Manager config;
``deepz acquire --model M`` also refocuses every frame live (`deepz._cli_live`, with
``deepz refocus``, and ``deepz gui`` / ``deepz demo``, which open the Qt panel).
``deepz train`` and ``deepz evaluate`` make and
score Deep-Z models from z-stacks (`deepz._cli_train`, `deepz._cli_evaluate`;
``deepz export`` and ``deepz bench``: `deepz._cli_export`).

Output contract: with ``--json`` exactly one JSON object goes to stdout; everything
else (progress, warnings, errors) goes to stderr. An error is one line on stderr and a
non-zero exit: 1 for a failed run (`DeepzError`, `InferenceError`, `CommandFailed`:
also an output that exists without ``--overwrite``), 2 for bad usage (an option value
that makes no sense, including a bad ``--set``), 130 when interrupted with Ctrl-C, and
128 + the signal when stopped by SIGTERM (143) or SIGHUP (129), which are handled as
Ctrl-C is: what was recorded or trained so far is kept, and the error line says what.
"""

from __future__ import annotations

import gc
import json
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.main
from rich.console import Console

from deepz import _cli_evaluate, _cli_export, _cli_live, _cli_train
from deepz._cli_options import CommandFailed, CommandInterrupted
from deepz_live.acquisition import (
    AcquisitionInterrupted,
    ConfigError,
    DeepzError,
    Microscope,
    acquire_timelapse,
    acquire_zstack,
    open_microscope,
)
from deepz_live.inference import InferenceError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from contextlib import AbstractContextManager
    from types import FrameType

    ProgressReport = Callable[[int, int], None]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="deepz",
    help="Acquire widefield fluorescence data and train/evaluate Deep-Z models.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
_stderr = Console(stderr=True)

ConfigOption = _cli_live.ConfigOption
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="DEVICE,PROPERTY,VALUE",
        help="Set a device property after loading (repeatable, applied in order).",
    ),
]
ZOption = Annotated[
    float | None,
    typer.Option(
        "--z",
        help="Move the focus here (µm) first. Default: the specimen's focus when "
        "the scope knows it (simulator), else stay.",
    ),
]
ExposureOption = Annotated[
    float | None,
    typer.Option(
        "--exposure-ms",
        help="Camera exposure (ms). Default: a --set CAMERA,Exposure,MS value, "
        "else 10.",
        show_default=False,
    ),
]
DEFAULT_EXPOSURE_MS = 10.0
LedOption = Annotated[
    float | None,
    typer.Option("--led-intensity", help="LED intensity (% of maximum)."),
]
JsonOption = _cli_live.JsonOption
OverwriteOption = _cli_live.OverwriteOption


@app.command()
def acquire(
    config: ConfigOption = None,
    frames: Annotated[int, typer.Option("--frames", help="Number of frames.")] = 30,
    interval_ms: Annotated[
        float,
        typer.Option("--interval-ms", help="Time between frames (ms); 0 = stream."),
    ] = 0.0,
    exposure_ms: ExposureOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help=(
                "Output: *.ome.tif, or *.ome.zarr (zarr extra). "
                "Default: runs/<timestamp>-timelapse.ome.tif"
            ),
            show_default=False,
        ),
    ] = None,
    led_intensity: LedOption = None,
    json_output: JsonOption = False,
    set_properties: SetOption = None,
    z: ZOption = None,
    overwrite: OverwriteOption = False,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Refocus every frame live with this Deep-Z model ('default' or a "
            ".safetensors file) into virtual volumes.",
            show_default=False,
        ),
    ] = None,
    planes: _cli_live.PlanesOption = None,
    policy: _cli_live.PolicyOption = "latest",
    save_volumes: _cli_live.SaveVolumesOption = False,
    backend: _cli_live.BackendOption = "auto",
    device: _cli_live.DeviceOption = "cpu",
    allow_model_mismatch: _cli_live.MismatchOption = False,
) -> None:
    """Record a single-plane time-lapse to an OME-TIFF (--model: refocused live)."""
    out_path = out or _default_output("timelapse")
    exposure = _exposure(exposure_ms, set_properties)
    if model is not None:
        plan = _cli_live.run_plan(
            config=config,
            model=model,
            planes_um=_cli_live.planes_from_option(planes),
            policy=_cli_live.check_policy(policy),
            save_volumes=save_volumes,
            frames=frames,
            interval_ms=interval_ms,
            exposure_ms=exposure,
            out=out_path,
            led_intensity=led_intensity,
            overwrite=overwrite,
            backend=backend,
            device=device,
            allow_model_mismatch=allow_model_mismatch,
        )
        with _scope(config, set_properties, z) as scope:
            live = _cli_live.acquire_live(scope, plan, json_output=json_output)
        if json_output:
            _print_json(live.to_dict())
        else:
            typer.echo(_cli_live.live_summary_text(live))
        return
    if planes is not None or save_volumes or policy != "latest":
        raise _UsageError(
            "--planes, --policy and --save-volumes refocus frames live and need "
            "--model (e.g. --model default)."
        )
    with _scope(config, set_properties, z) as scope, _progress(json_output) as report:
        summary = acquire_timelapse(
            scope,
            frames=frames,
            interval_ms=interval_ms,
            exposure_ms=exposure,
            out=out_path,
            led_intensity=led_intensity,
            overwrite=overwrite,
            progress=report,
        )
    if json_output:
        _print_json(summary.to_dict())
        return
    fps = "n/a" if summary.fps is None else f"{summary.fps:.1f}"
    lines = [f"Saved {summary.frames} frames to {summary.output} ({fps} fps)."]
    if summary.canceled:
        lines.append("The run was canceled before all frames were taken.")
    if summary.dose_total_J_cm2 is None:
        lines.append("Light dose: not reported by this camera.")
    else:
        lines.append(
            f"Light dose: {summary.dose_per_frame_J_cm2:.3g} J/cm² per frame, "
            f"{summary.dose_total_J_cm2:.3g} J/cm² in total; the same run as "
            f"{summary.zstack_planes}-plane z-stacks would take "
            f"{summary.equivalent_zstack_dose_J_cm2:.3g} J/cm²."
        )
    typer.echo("\n".join(lines))


@app.command()
def zstack(
    config: ConfigOption = None,
    range_um: Annotated[
        float, typer.Option("--range-um", help="Total z range (µm), centred on focus.")
    ] = 20.0,
    step_um: Annotated[
        float, typer.Option("--step-um", help="Plane spacing (µm).")
    ] = 1.0,
    exposure_ms: ExposureOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help=(
                "Output: *.ome.tif, or *.ome.zarr (zarr extra). "
                "Default: runs/<timestamp>-zstack.ome.tif"
            ),
            show_default=False,
        ),
    ] = None,
    led_intensity: LedOption = None,
    json_output: JsonOption = False,
    set_properties: SetOption = None,
    z: ZOption = None,
    overwrite: OverwriteOption = False,
    ground_truth: Annotated[
        bool,
        typer.Option(
            "--ground-truth",
            help=(
                "Simulator only: also save the noise-free twin of every plane "
                "(<stem>.clean.ome.tif, rendered after the stack: about as long "
                "again) and the objects with their in-focus z (<stem>.objects.csv) "
                "beside the stack."
            ),
        ),
    ] = False,
) -> None:
    """Record a z-stack centred on the focus to an OME-TIFF."""
    out_path = out or _default_output("zstack")
    exposure = _exposure(exposure_ms, set_properties)
    with _scope(config, set_properties, z) as scope, _progress(json_output) as report:
        summary = acquire_zstack(
            scope,
            range_um=range_um,
            step_um=step_um,
            exposure_ms=exposure,
            out=out_path,
            led_intensity=led_intensity,
            overwrite=overwrite,
            progress=report,
            ground_truth=ground_truth,
        )
    if json_output:
        _print_json(summary.to_dict())
        return
    z_um, y_um, x_um = summary.voxel_um
    voxel = (
        f"{z_um:g} × {y_um:g} × {x_um:g} µm"
        if y_um is not None and x_um is not None
        else f"{z_um:g} µm planes (pixel size not calibrated)"
    )
    shape = " × ".join(str(n) for n in summary.shape)
    text = f"Saved a {shape} (z, y, x) stack to {summary.output}; voxel {voxel}."
    if summary.canceled:
        text += " The run was canceled before all planes were taken."
    if summary.clean_output is not None:
        text += (
            f" Ground truth: {summary.clean_output.name} (noise-free planes), "
            f"{summary.objects_output.name if summary.objects_output else ''} "
            "(objects)."
        )
    typer.echo(text)


# -- helpers -------------------------------------------------------------------------
class _UsageError(Exception):
    """A bad option value found after parsing (exit code 2)."""


@contextmanager
def _scope(
    config: Path | None, set_properties: list[str] | None, z: float | None
) -> Iterator[Microscope]:
    settings = [_parse_set(text) for text in set_properties or ()]
    scope = open_microscope(config)
    try:
        _apply_settings(scope, settings)
        if z is not None:
            scope.move_focus(z)
        else:
            scope.focus_on_specimen()
        yield scope
    finally:
        scope.close()


def _apply_settings(scope: Microscope, settings: list[tuple[str, str, str]]) -> None:
    device = prop = value = ""
    try:
        for device, prop, value in settings:
            scope.set_property(device, prop, value)
    except ConfigError as exc:
        raise _UsageError(f"--set {device},{prop},{value}: {exc}") from exc


def _exposure(exposure_ms: float | None, set_properties: list[str] | None) -> float:
    """The run's exposure: --exposure-ms, or a --set ...,Exposure,MS, never both.

    The run sets the camera's exposure itself, so an exposure given through --set
    alone would be replaced silently by the default.
    """
    from_set = [
        (device, value)
        for device, prop, value in map(_parse_set, set_properties or ())
        if prop == "Exposure"
    ]
    if not from_set:
        return DEFAULT_EXPOSURE_MS if exposure_ms is None else exposure_ms
    device, text = from_set[-1]
    try:
        value = float(text)
    except ValueError:
        raise _UsageError(
            f"--set {device},Exposure,{text}: the exposure must be a number of ms."
        ) from None
    if exposure_ms is not None and exposure_ms != value:
        raise _UsageError(
            f"--exposure-ms {exposure_ms:g} and --set {device},Exposure,{text} ask "
            "for two exposures: give one of them."
        )
    return value


def _parse_set(text: str) -> tuple[str, str, str]:
    parts = [p.strip() for p in text.split(",", 2)]
    if len(parts) != 3 or not all(parts[:2]):
        raise _UsageError(
            f"--set {text!r}: expected DEVICE,PROPERTY,VALUE "
            "(e.g. --set Camera,Binning,2)."
        )
    device, prop, value = parts
    return device, prop, value


def _progress(quiet: bool) -> AbstractContextManager[ProgressReport | None]:
    """A rich progress bar on stderr, when stderr is a terminal."""
    return _cli_live.progress_bar("Acquiring")


def _default_output(kind: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{kind}.ome.tif"


def _print_json(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"deepz: error: {' '.join(message.split())}\n")
    _release_handled_frames()
    raise SystemExit(code)


def _release_handled_frames() -> None:
    """Let go of the frames of the exception being handled, and of its causes.

    They hold what the command had open (a closed microscope's core among them).
    Left to interpreter shutdown, a core can be freed while a C++ thread still calls
    into Python, which aborts the process ("exception not rethrown", exit -6 instead
    of the intended code; about one Ctrl-C in eight here). Freed now, it goes first.
    """
    error = sys.exc_info()[1]
    while error is not None:
        error.__traceback__ = None
        error = error.__cause__ or error.__context__
    gc.collect()


def _quiet_libraries() -> None:
    """Keep stderr for our own messages: library chatter goes to pymmcore's log file."""
    from pymmcore_plus import configure_logging

    configure_logging(stderr_level="ERROR")
    # deepz returns the focus itself; pymmcore-plus's note about not doing so is noise
    warnings.filterwarnings("ignore", message="Focus direction is unknown")


_cli_train.register(app)
_cli_export.register(app)
_cli_evaluate.register(app)
_cli_live.register(app)


def cli_command() -> Any:
    """The ``deepz`` command line as a click command (for `main` and the tests).

    Typer (0.29) labels every option with its type, flags too (``--json <bool>``),
    although a flag takes no value: their label is blanked here.
    """
    command = typer.main.get_command(app)
    commands = getattr(command, "commands", {})
    for sub in [command, *commands.values()]:
        help_option = sub.get_help_option(sub.context_class(sub))  # made once, cached
        for param in [*sub.params, help_option]:
            if getattr(param, "is_flag", False):
                param.metavar = ""
    return command


#: SIGTERM (a job scheduler, ``kill``) and SIGHUP (a closed terminal) stop a command
#: the way Ctrl-C does, as they stop an acquisition (`AcquisitionTerminated`)
_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class _Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C would be: the same clean-up runs."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


class _StopSignal:
    """The stop signal received while the command ran, if any (main thread only)."""

    number: int | None = None

    @classmethod
    def handle(cls, signal_number: int, frame: FrameType | None) -> None:
        if cls.number is None:
            cls.number = signal_number
            raise _Stopped(signal_number)
        # a second one while the command stops: the stop is under way


@contextmanager
def _stop_signals_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP stop the command as Ctrl-C does."""
    _StopSignal.number = None
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = {
        number: signal.signal(number, _StopSignal.handle) for number in _STOP_SIGNALS
    }
    try:
        yield
    finally:
        for number, handler in previous.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(number, handler)


def _interrupted(message: str, exit_code: int | None = None) -> None:
    """Exit 130 after Ctrl-C, 128 + the signal after SIGTERM (143) or SIGHUP (129).

    ``exit_code``: the code an acquisition stopped by a signal reports itself
    (`AcquisitionTerminated`); else the signal this command's handler received,
    named in ``message`` in place of "Ctrl-C".
    """
    if exit_code is None and _StopSignal.number is not None:
        name = signal.Signals(_StopSignal.number).name
        message = message.replace("Ctrl-C", name)
        exit_code = 128 + _StopSignal.number
    _fail(message, exit_code or EXIT_INTERRUPTED)


def main(argv: list[str] | None = None) -> None:
    """Run the ``deepz`` command line (the ``deepz`` console script)."""
    _quiet_libraries()
    try:
        with _stop_signals_as_interrupt():
            result = cli_command().main(args=argv, standalone_mode=False)
        if result == EXIT_INTERRUPTED:
            # typer turns a KeyboardInterrupt that leaves a command into this code
            _interrupted("stopped by Ctrl-C.")
    except (AcquisitionInterrupted, CommandInterrupted) as exc:
        code = getattr(exc, "exit_code", None)
        _interrupted(str(exc), code if isinstance(code, int) else None)
    except (_UsageError, _cli_live.LiveUsageError) as exc:
        _fail(str(exc), EXIT_USAGE)
    except (DeepzError, InferenceError, CommandFailed) as exc:
        _fail(str(exc), EXIT_FAILED)
    except (KeyboardInterrupt, typer.Abort):
        _interrupted("stopped by Ctrl-C.")
    except Exception as exc:
        # typer/click usage errors (bad option value, unknown option...)
        exit_code = getattr(exc, "exit_code", None)
        format_message = getattr(exc, "format_message", None)
        if callable(format_message) and isinstance(exit_code, int):
            message = format_message()
            if not message:  # e.g. no command given: the help was printed
                raise SystemExit(exit_code) from None
            _fail(message, exit_code)
        raise
