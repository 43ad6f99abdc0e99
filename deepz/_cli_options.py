"""Options shared by the model commands: ``train``, ``export``, ``bench``, ``evaluate``.

One definition per option, so that a flag reads and behaves the same in every
command that takes it; `say` writes the commands' progress notes to stderr (stdout
carries only the results: a table, or JSON with ``--json``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

ModelArgument = Annotated[
    str, typer.Argument(help="Model file, or the name of a bundled model.")
]
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
JsonOption = Annotated[bool, typer.Option("--json", help="JSON on stdout.")]


def say(text: str) -> None:
    """Write one progress note (a line) to stderr."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
