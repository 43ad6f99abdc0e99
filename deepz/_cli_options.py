"""Options shared by the model commands: ``train``, ``export``, ``bench``, ``evaluate``.

One definition per option, so that a flag reads and behaves the same in every
command that takes it; `say` writes the commands' progress notes to stderr (stdout
carries only the results: a table, or JSON with ``--json``). `check_output` is the
one rule for the files these commands write (never replaced without ``--overwrite``,
checked before the work), and `CommandFailed` / `CommandInterrupted` are how they end
with exit code 1 or 130 (`deepz._cli.main` maps them; `out_of_memory_fails` turns
running out of memory into the former).
"""

from __future__ import annotations

import math
import re
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

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
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="Replace existing output files.")
]


class CommandFailed(Exception):
    """A model command cannot do what was asked (exit code 1); one-line message."""


class CommandInterrupted(Exception):
    """Ctrl-C (or SIGTERM) stopped a model command; the message says what was kept."""


def check_output(
    path: Path,
    *,
    overwrite: bool,
    option: str = "--out",
    companions: Iterable[Path] = (),
    inputs: Iterable[Path] = (),
    create_folder: bool = True,
    example: str = "out",
) -> None:
    """Refuse an output that cannot be written, or may not be, before any work.

    ``path`` and its ``companions`` (files written beside it: a checkpoint, a
    sidecar) are never replaced without ``overwrite``, and never when they are one
    of the command's ``inputs``. A missing folder is created (as ``deepz acquire``
    does), unless ``create_folder`` is false: then it is an error. ``example`` is
    a file name to suggest when ``path`` is a folder.

    Raises
    ------
    CommandFailed
        With what is wrong and what to do instead.
    """
    given = {_absolute(p) for p in inputs}
    for file in (path, *companions):
        if _absolute(file) in given:
            raise CommandFailed(
                f"{option} {path}: {file} is also an input of this command; "
                "write the output to another file."
            )
        if file.is_dir():
            raise CommandFailed(
                f"{option} {path}: {file} is a folder; give a file name such as "
                f"{file / example}."
            )
        if file.exists() and not overwrite:
            raise CommandFailed(
                f"{file} already exists; choose another {option} or pass --overwrite "
                "to replace it."
            )
    folder = _absolute(path).parent
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise CommandFailed(
            f"{option} {path}: {existing} is a file, not a folder; choose another "
            "location."
        )
    if not folder.is_dir():
        if not create_folder:
            raise CommandFailed(
                f"{option} {path}: folder {folder} does not exist; create it first."
            )
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandFailed(
                f"{option} {path}: cannot create folder {folder} "
                f"({exc.strerror or exc}); choose a location you can write to."
            ) from None
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise CommandFailed(
            f"{option} {path}: folder {folder} is not writable "
            f"({exc.strerror or exc}); choose a location you can write to."
        ) from None


def check_positive(value: float | None, option: str, *, zero: bool = False) -> None:
    """A usage error unless ``value`` (if given) is finite and > 0 (≥ 0: ``zero``)."""
    if value is None:
        return
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        least = "0 or more" if zero else "more than 0"
        raise typer.BadParameter(f"{option} must be {least}, got {value}.")


def check_choice(value: str, option: str, choices: Iterable[str]) -> None:
    """A usage error unless ``value`` is one of ``choices``."""
    names = list(choices)
    if value not in names:
        raise typer.BadParameter(
            f"{option} {value!r}: choose one of {', '.join(names)}."
        )


@contextmanager
def out_of_memory_fails(hint: str) -> Iterator[None]:
    """Running out of memory (numpy, torch on the CPU or a GPU): a `CommandFailed`.

    ``hint`` says which options make the work smaller.
    """
    try:
        yield
    except MemoryError as exc:  # numpy: "Unable to allocate 7.6 GiB for an array..."
        raise CommandFailed(f"Out of memory: {exc}; {hint}") from None
    except RuntimeError as exc:  # torch: DefaultCPUAllocator, torch.OutOfMemoryError
        text = str(exc)
        if "out of memory" not in text.lower() and "allocate memory" not in text:
            raise
        asked = re.search(
            r"(?i)tried to allocate ([\d.]+ ?[KMGT]i?B|\d+) ?(bytes)?", text
        )
        size = ""
        if asked:
            amount = asked.group(1)
            if asked.group(2):  # a number of bytes
                amount = f"{int(amount) / 2**30:.3g} GiB"
            size = f" ({amount} more were asked for)"
        raise CommandFailed(f"Out of memory{size}; {hint}") from None


def _absolute(path: Path) -> Path:
    return path.expanduser().absolute()


def say(text: str) -> None:
    """Write one progress note (a line) to stderr."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
