"""The evaluation figure: PSNR, SSIM and axial error versus |dz|, and XZ/YZ sections.

Drawn from an `EvaluationResult` with matplotlib's Agg backend (files, no window);
matplotlib is imported only when a figure is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from deepz_live.inference._evaluation_result import (
        AxialSection,
        BinMetrics,
        EvaluationResult,
    )

__all__ = ["plot_evaluation"]


def plot_evaluation(result: EvaluationResult, path: str | Path) -> Path:
    """PSNR, SSIM and axial error versus |dz|, and XZ/YZ sections, as one figure.

    Top row: PSNR and SSIM of the model and of the identity (against the clean
    planes too, where the stacks have them), and the median axial error of the
    model beside the "everything in the focal plane" baseline. Below, for each
    kept section (`evaluate_stacks(..., sections=N)`): XZ and YZ through one
    object, each as scan | model | identity at the same contrast, axes in µm,
    the input plane dashed and the object's true focus marked.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 1 + len(result.sections)
    fig = plt.figure(figsize=(15, 4 + 3.2 * len(result.sections)))
    grid = fig.add_gridspec(rows, 6, height_ratios=[4] + [3.2] * len(result.sections))
    top = [fig.add_subplot(grid[0, 0:2]), fig.add_subplot(grid[0, 2:4])]
    top.append(fig.add_subplot(grid[0, 4:6]))
    for ax, metric, unit in ((top[0], "psnr", "PSNR (dB)"), (top[1], "ssim", "SSIM")):
        for suffix, style, label in (("", "-", "recorded"), ("_clean", ":", "clean")):
            model = _series(result.bins, f"{metric}_model{suffix}")
            ident = _series(result.bins, f"{metric}_identity{suffix}")
            if not model:
                continue
            ax.plot(*zip(*model, strict=True), "o" + style, color="C0",
                    label=f"model ({result.model}) vs {label}")  # fmt: skip
            ax.plot(*zip(*ident, strict=True), "s" + style, color="grey",
                    label=f"identity vs {label}")  # fmt: skip
        ax.set_xlabel("|dz| (µm)")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axial = [(b.dz_um, b.axial_error_median_um, b.axial_baseline_median_um)
             for b in result.bins if b.axial_error_median_um is not None]  # fmt: skip
    ax = top[2]
    if axial:
        d, model_err, base_err = zip(*axial, strict=True)
        ax.plot(d, model_err, "o-", color="C0", label=f"model ({result.model})")
        ax.plot(d, base_err, "s--", color="grey", label="all in the focal plane")
        ax.axhline(1.0, color="C2", lw=0.8, label="1 µm")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no objects scored", ha="center", transform=ax.transAxes)
    ax.set_xlabel("true distance of the object from the input plane (µm)")
    ax.set_ylabel("median axial error (µm)")
    ax.grid(alpha=0.3)
    for r, section in enumerate(result.sections, start=1):
        _plot_section(fig, grid, r, section)
    axial_all = result.axial()
    title = f"{result.model} on {len(result.stacks)} stack(s)"
    if axial_all["axial_error_median_um"] is not None:
        title += (
            f"; axial error median {axial_all['axial_error_median_um']:.2f} µm "
            f"({axial_all['axial_within_1um_fraction']:.0%} within 1 µm), in-focal-"
            f"plane guess {axial_all['axial_baseline_median_um']:.2f} µm"
        )
    gain = result.mean_psnr_gain_db(2.0, 10.0)
    if gain is not None:
        title += f"; PSNR gain 2-10 µm {gain:+.2f} dB"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _series(bins: Sequence[BinMetrics], name: str) -> list[tuple[float, float]]:
    """``(dz, value)`` of the bins where the metric exists."""
    return [(b.dz_um, value) for b in bins if (value := getattr(b, name)) is not None]


#: half-width (µm) of the sections' lateral extent around the object
_SECTION_HALF_WIDTH_UM = 12.0


def _plot_section(fig: Any, grid: Any, row: int, section: AxialSection) -> None:
    z = section.z_um
    z_obj, y_obj, x_obj = section.object_zyx
    half = round(_SECTION_HALF_WIDTH_UM / section.pixel_um)
    for c, (name, centre) in enumerate((("XZ", x_obj), ("YZ", y_obj))):
        images = [section.scan[c], section.model[c], section.identity[c]]
        lo = max(0, round(centre) - half)
        hi = min(images[0].shape[1], round(centre) + half + 1)
        images = [im[:, lo:hi] for im in images]
        vmin = float(np.percentile(images[0], 0.5))
        vmax = float(np.percentile(images[0], 99.9))
        lateral = (np.array([lo, hi - 1]) - centre) * section.pixel_um
        extent = (lateral[0], lateral[1], z[0] - z_obj, z[-1] - z_obj)
        for k, (image, label) in enumerate(
            zip(images, ("scan", "model", "identity"), strict=True)
        ):
            ax = fig.add_subplot(grid[row, 3 * c + k])
            ax.imshow(
                image,
                cmap="gray",
                vmin=vmin,
                vmax=vmax,
                origin="lower",
                extent=extent,
                aspect="equal",
                interpolation="nearest",
            )
            ax.axhline(section.input_z_um - z_obj, color="C1", ls="--", lw=0.8)
            ax.plot([0], [0], marker="+", color="C3", ms=10)
            axis = "x" if name == "XZ" else "y"
            ax.set_title(f"{name} {label}", fontsize=9)
            ax.set_xlabel(f"{axis} (µm)", fontsize=8)
            if k == 0:
                ax.set_ylabel("z − object focus (µm)", fontsize=8)
            ax.tick_params(labelsize=7)
