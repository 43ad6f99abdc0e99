"""Light dose: the sums every run reports, and the z-stack they are compared with.

A frame's dose comes from the camera's per-frame metadata (``dose_J_cm2``; the
simulated camera reports it, a real one does not, and then every figure is None). A
single-plane run is compared with what a scanned z-stack of the same volumes would
have cost: one exposure per plane instead of one per frame, at the same dose per
exposure. Time-lapses, live sessions and the panel's telemetry all use these
functions, so the comparison means the same thing everywhere.
"""

from __future__ import annotations

from typing import Any

__all__ = ["dose_total", "equivalent_zstack_dose", "zstack_plane_count"]


def dose_total(doses: list[Any]) -> float | None:
    """Sum of per-frame doses, or None if there are none or any is not a number."""
    if not doses or any(
        not isinstance(v, (int, float)) or isinstance(v, bool) for v in doses
    ):
        return None
    return float(sum(doses))


def zstack_plane_count(range_um: float, step_um: float) -> int:
    """Planes of a stack ``range_um`` deep in ``step_um`` steps, both ends included."""
    return round(range_um / step_um) + 1


def equivalent_zstack_dose(
    dose_J_cm2: float | None, zstack_planes: int
) -> float | None:
    """The dose of the same frames as scanned z-stacks of ``zstack_planes`` planes.

    Parameters
    ----------
    dose_J_cm2 : float or None
        Dose of the single-plane frames (one frame, or a run's total).
    zstack_planes : int
        Planes of the comparison z-stack (one exposure each).

    Returns
    -------
    float or None
        ``dose_J_cm2 × zstack_planes``; None when the dose is not known.
    """
    return None if dose_J_cm2 is None else float(dose_J_cm2) * zstack_planes
