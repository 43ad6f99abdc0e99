"""What a scripted run reports: `TimelapseSummary` and `ZStackSummary`.

Also the two figures every run summary shares with a live session's: the frame
rate measured from the frames' timestamps (`measured_fps`) and the rounding that
keeps float noise out of JSON summaries (`significant`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["TimelapseSummary", "ZStackSummary", "measured_fps", "significant"]


@dataclass(frozen=True)
class TimelapseSummary:
    """What a time-lapse produced.

    Attributes
    ----------
    frames : int
        Frames written.
    fps : float or None
        Frame rate measured from the frames' timestamps (None for fewer than two).
    output : Path
        The OME-TIFF.
    dose_per_frame_J_cm2, dose_total_J_cm2 : float or None
        Light dose on the sample per frame (mean) and for the whole run, from the
        camera's per-frame metadata. None when the camera does not report dose (a
        real microscope).
    equivalent_zstack_dose_J_cm2 : float or None
        Dose the same run would have cost as scanned z-stacks (one stack of
        ``zstack_planes`` planes per time point): what single-plane Deep-Z saves.
    zstack_planes : int
        Plane count of that equivalent stack.
    canceled : bool
        The run was canceled (``core.mda.cancel()``) before all frames were taken.
    """

    frames: int
    fps: float | None
    output: Path
    dose_per_frame_J_cm2: float | None
    dose_total_J_cm2: float | None
    equivalent_zstack_dose_J_cm2: float | None
    zstack_planes: int
    canceled: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary printed by ``deepz acquire --json``."""
        return {
            "frames": self.frames,
            "fps": significant(self.fps, 4),
            "output": str(self.output),
            "dose_per_frame_J_cm2": significant(self.dose_per_frame_J_cm2),
            "dose_total_J_cm2": significant(self.dose_total_J_cm2),
            "equivalent_zstack_dose_J_cm2": significant(
                self.equivalent_zstack_dose_J_cm2
            ),
        }


@dataclass(frozen=True)
class ZStackSummary:
    """What a z-stack produced.

    Attributes
    ----------
    output : Path
        The OME-TIFF.
    shape : list of int
        ``[Z, Y, X]`` of the written stack.
    voxel_um : list of float or None
        ``[z, y, x]`` voxel size in µm; y/x are None without a pixel-size calibration.
    dose_total_J_cm2 : float or None
        Light dose of the whole stack, when the camera reports it.
    canceled : bool
        The run was canceled before all planes were taken.
    clean_output, objects_output : Path or None
        The simulator's ground truth beside the stack (``ground_truth=True``).
    """

    output: Path
    shape: list[int]
    voxel_um: list[float | None]
    dose_total_J_cm2: float | None = None
    canceled: bool = False
    clean_output: Path | None = None
    objects_output: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary printed by ``deepz zstack --json``."""
        summary: dict[str, Any] = {
            "output": str(self.output),
            "shape": self.shape,
            "voxel_um": self.voxel_um,
        }
        if self.clean_output is not None:
            summary["clean_output"] = str(self.clean_output)
        if self.objects_output is not None:
            summary["objects_output"] = str(self.objects_output)
        return summary


def significant(value: float | None, digits: int = 9) -> float | None:
    """Round for display: dose sums carry float noise (0.0020000000000000013)."""
    return None if value is None else float(f"{value:.{digits}g}")


def measured_fps(times: list[Any]) -> float | None:
    """Frames per second from the frames' timestamps (s), first to last.

    None for fewer than two frames, for any frame without a numeric timestamp, or
    when no time passed.
    """
    numbers = [t for t in times if isinstance(t, (int, float))]
    if len(numbers) < 2 or len(numbers) != len(times):
        return None
    span = numbers[-1] - numbers[0]
    return (len(numbers) - 1) / span if span > 0 else None
