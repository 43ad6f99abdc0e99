"""What an evaluation found: metrics per |dz| bin, axial localization, sections.

`evaluate_stacks` fills an `EvaluationResult`; this module holds the result and its
forms for people and programs: the Markdown table of ``deepz evaluate``, the JSON of
``deepz evaluate --json`` and the figures `plot_evaluation` draws from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["AxialSection", "BinMetrics", "EvaluationResult", "axial_summary"]


@dataclass(frozen=True)
class BinMetrics:
    """Metrics of one |dz| bin (centre ``dz_um``, width `EvaluationResult.bin_um`).

    PSNR/SSIM/NRMSE are means over the pairs (input plane, target plane) whose |dz|
    falls in the bin, against the recorded planes and, where the stack has a
    noise-free twin, against the clean planes (``*_clean``). The axial figures are
    over the objects whose true distance from the input plane falls in the bin:
    median |error| of the depth at which each comes into focus in the virtual
    stack, the share within 1 µm, and the same for the "everything is in the
    focal plane" baseline. None where the bin has no such pair or object.
    """

    dz_um: float
    pairs: int
    psnr_model: float | None = None
    psnr_identity: float | None = None
    ssim_model: float | None = None
    ssim_identity: float | None = None
    nrmse_model: float | None = None
    nrmse_identity: float | None = None
    psnr_model_clean: float | None = None
    psnr_identity_clean: float | None = None
    ssim_model_clean: float | None = None
    ssim_identity_clean: float | None = None
    axial_objects: int = 0
    axial_error_median_um: float | None = None
    axial_within_1um_fraction: float | None = None
    axial_baseline_median_um: float | None = None
    axial_baseline_within_1um_fraction: float | None = None

    @property
    def psnr_gain_db(self) -> float | None:
        if self.psnr_model is None or self.psnr_identity is None:
            return None
        return self.psnr_model - self.psnr_identity

    @property
    def psnr_gain_clean_db(self) -> float | None:
        if self.psnr_model_clean is None or self.psnr_identity_clean is None:
            return None
        return self.psnr_model_clean - self.psnr_identity_clean


@dataclass
class AxialSection:
    """XZ and YZ sections through one object: scan | model | identity (for plots)."""

    source: str
    input_z_um: float
    object_zyx: tuple[float, float, float]
    z_um: np.ndarray
    pixel_um: float
    scan: tuple[np.ndarray, np.ndarray]  # (XZ, YZ), each (Z, width)
    model: tuple[np.ndarray, np.ndarray]
    identity: tuple[np.ndarray, np.ndarray]


def axial_summary(errors: Sequence[float]) -> tuple[float | None, float | None]:
    """Median |axial error| (µm) and the share within 1 µm (None, None: no errors)."""
    if not len(errors):
        return None, None
    e = np.abs(np.asarray(errors, dtype=np.float64))
    return float(np.median(e)), float(np.mean(e <= 1.0 + 1e-9))


@dataclass
class EvaluationResult:
    """Per-|dz| metrics for a model and the identity baseline."""

    model: str
    stacks: list[str]
    bins: list[BinMetrics]
    inputs_per_stack: int | None
    crop: int | None
    notes: list[str] = field(default_factory=list)
    bin_um: float = 1.0
    clean_targets: bool = False
    axial_range_um: float | None = None
    axial_errors_um: list[float] = field(default_factory=list)
    axial_baseline_errors_um: list[float] = field(default_factory=list)
    sections: list[AxialSection] = field(default_factory=list, repr=False)

    def mean_psnr_gain_db(
        self, lo: float = 1.0, hi: float = np.inf, *, clean: bool = False
    ) -> float | None:
        """Mean PSNR gain (dB) over the bins with lo ≤ |dz| ≤ hi."""
        gains = [
            g
            for b in self.bins
            if lo <= b.dz_um <= hi
            and (g := b.psnr_gain_clean_db if clean else b.psnr_gain_db) is not None
        ]
        return float(np.mean(gains)) if gains else None

    def axial(self) -> dict[str, float | int | None]:
        """Overall axial-localization figures (see `BinMetrics`)."""
        median, within = axial_summary(self.axial_errors_um)
        base, base_within = axial_summary(self.axial_baseline_errors_um)
        return {
            "axial_objects": len(self.axial_errors_um),
            "axial_error_median_um": median,
            "axial_within_1um_fraction": within,
            "axial_baseline_median_um": base,
            "axial_baseline_within_1um_fraction": base_within,
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``deepz evaluate --json``."""
        axial = {k: _round(v) for k, v in self.axial().items()}
        return {
            "model": self.model,
            "stacks": self.stacks,
            "inputs_per_stack": self.inputs_per_stack,
            "crop": self.crop,
            "bin_um": self.bin_um,
            "clean_targets": self.clean_targets,
            "axial_range_um": self.axial_range_um,
            **axial,
            "bins": [{k: _round(v) for k, v in asdict(b).items()} for b in self.bins],
            "mean_psnr_gain_db": _round(self.mean_psnr_gain_db(1.0)),
            "mean_psnr_gain_db_2_to_10um": _round(self.mean_psnr_gain_db(2.0, 10.0)),
            "mean_psnr_gain_clean_db_2_to_10um": _round(
                self.mean_psnr_gain_db(2.0, 10.0, clean=True)
            ),
            "notes": self.notes,
        }

    def table(self) -> str:
        """A Markdown table per |dz| bin."""

        def fmt(value: float | None, spec: str) -> str:
            return "–" if value is None else format(value, spec)

        clean = self.clean_targets
        head = "| abs(dz) µm | objects | axial error model µm | within 1 µm | "
        head += "axial error in-focal-plane µm | pairs | PSNR model | PSNR identity | "
        head += "gain dB | SSIM model | SSIM identity |"
        if clean:
            head += " PSNR model clean | PSNR identity clean | gain clean dB |"
        lines = [head, "|" + "---|" * (head.count("|") - 1)]
        for b in self.bins:
            row = (
                f"| {b.dz_um:g} | {b.axial_objects} | "
                f"{fmt(b.axial_error_median_um, '.2f')} | "
                f"{fmt(b.axial_within_1um_fraction, '.0%')} | "
                f"{fmt(b.axial_baseline_median_um, '.2f')} | {b.pairs} | "
                f"{fmt(b.psnr_model, '.2f')} | {fmt(b.psnr_identity, '.2f')} | "
                f"{fmt(b.psnr_gain_db, '+.2f')} | {fmt(b.ssim_model, '.3f')} | "
                f"{fmt(b.ssim_identity, '.3f')} |"
            )
            if clean:
                row += (
                    f" {fmt(b.psnr_model_clean, '.2f')} | "
                    f"{fmt(b.psnr_identity_clean, '.2f')} | "
                    f"{fmt(b.psnr_gain_clean_db, '+.2f')} |"
                )
            lines.append(row)
        return "\n".join(lines)


def _round(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    return float(f"{value:.5g}")
