"""Evaluation against mechanically scanned planes.

For each z-stack, a few input planes are refocused to every other plane within the
model's range and compared with the real planes, binned by |dz| (1 µm bins centred on
whole µm). The identity baseline (the input plane itself, "no refocusing") is scored
the same way, so the gain says what the model adds.

Both images of a pair are normalized with the *input's* scale (as in training) and
PSNR/SSIM use the real plane's range, so the figures do not depend on exposure or
camera gain.

Cross-modality models (widefield in, confocal out) are scored against the planes of
registered *target* stacks instead (``target_stacks``), normalized as in training
(`TargetNormalization`); the identity baseline is still the input plane itself,
brightness-matched to the target stack (× the pair's robust target/input brightness
ratio), so that the model's gain is not merely the instruments' brightness ratio;
the in-focus pair (|dz| < 0.5 µm, bin 0) counts too, since turning a widefield plane
into the confocal one at the same focus is part of the task.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepz_live.inference._depth import (
    bin_width_um,
    find_objects,
    isolated,
    peak_z,
    profiles,
)
from deepz_live.inference._metrics import nrmse, psnr, ssim
from deepz_live.inference._pairs import _check_targets

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from deepz_live.inference._normalize import Normalization
    from deepz_live.inference._pairs import TargetNormalization
    from deepz_live.inference._stacks import ZStack

#: predict(normalized_input (Y, X), dz_um (N,)) -> normalized outputs (N, Y, X)
Predictor = "Callable[[np.ndarray, np.ndarray], np.ndarray]"


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


def _axial_summary(errors: Sequence[float]) -> tuple[float | None, float | None]:
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
        median, within = _axial_summary(self.axial_errors_um)
        base, base_within = _axial_summary(self.axial_baseline_errors_um)
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


def choose_input_planes(
    z_um: np.ndarray, dz_range_um: float, n: int | None
) -> list[int]:
    """Input planes: evenly spread over those with the full ±range on both sides.

    When the stack is shorter than twice the range, over all planes. ``n=None`` takes
    every eligible plane.
    """
    z = np.asarray(z_um, float)
    full = np.flatnonzero(
        (z - dz_range_um >= z[0] - 1e-6) & (z + dz_range_um <= z[-1] + 1e-6)
    )
    candidates = full if full.size else np.arange(z.size)
    if n is None or n >= candidates.size:
        return [int(i) for i in candidates]
    picks = (
        np.linspace(0, candidates.size - 1, n + 2)[1:-1]
        if n > 1
        else [(candidates.size - 1) / 2]
    )
    return sorted({int(candidates[round(p)]) for p in picks})


def centre_crop_window(stack: ZStack, size: int | None) -> tuple[slice, slice]:
    """A ``size``² window centred on the stack's brightest structure."""
    h, w = stack.data.shape[1:]
    if size is None or (size >= h and size >= w):
        return slice(0, h), slice(0, w)
    size_h, size_w = min(size, h), min(size, w)
    projection = stack.data.max(axis=0).astype(np.float64)
    projection -= np.percentile(projection, 50)
    np.clip(projection, 0, None, out=projection)
    total = projection.sum()
    if total > 0:
        ys, xs = np.indices(projection.shape)
        cy, cx = (projection * ys).sum() / total, (projection * xs).sum() / total
    else:
        cy, cx = h / 2, w / 2
    y0 = int(np.clip(round(cy - size_h / 2), 0, h - size_h))
    x0 = int(np.clip(round(cx - size_w / 2), 0, w - size_w))
    return slice(y0, y0 + size_h), slice(x0, x0 + size_w)


def evaluate_stacks(
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    stacks: Sequence[ZStack],
    normalization: Normalization,
    *,
    dz_range_um: float,
    inputs_per_stack: int | None = 3,
    crop: int | None = 256,
    model_name: str = "model",
    progress: Callable[[int, int], None] | None = None,
    target_stacks: Sequence[ZStack] | None = None,
    target_normalization: TargetNormalization | None = None,
    bin_um: float | None = None,
    axial_range_um: float | None = None,
    isolation_um: float = 2.5,
    sections: int = 0,
) -> EvaluationResult:
    """Score ``predict`` and the identity against the real planes of ``stacks``.

    Parameters
    ----------
    predict : callable
        ``predict(normalized_input, dz_um)`` returns the refocused planes
        (N, Y, X) in normalized units.
    normalization : Normalization
        How inputs (and, with the input's scale, targets) are normalized.
    target_stacks : sequence of ZStack, optional
        Cross-modality: one registered stack per input stack (same shape and
        planes), whose planes are the truth at each z instead of the input
        stack's own. Bins then start at |dz| = 0.
    target_normalization : TargetNormalization, optional
        How target planes are normalized; required with ``target_stacks``. Its
        brightness ratio is fitted on each evaluated stack pair (whole stacks).
    bin_um : float, optional
        Width of the |dz| bins; default from the optics (`bin_width_um`: the
        depth of field, 1 µm at 20x/0.75, 0.5 µm at NA 1.4).
    axial_range_um : float, optional
        Objects up to this far from the input plane are scored for axial
        localization; default ``dz_range_um - 3`` (at least 1 µm), so that the
        virtual stack reaches well past every scored object's focus.
    isolation_um : float
        Only objects without another object this close laterally are scored
        (two objects above one another share a column of the virtual stack).
    sections : int
        Keep XZ/YZ sections (scan | model | identity) through this many objects,
        for `plot_sections`.

    Raises
    ------
    ValueError
        Target stacks without a target normalization, or that do not match the
        stacks one to one.
    """
    truth = list(stacks)
    brightness = ratios = [1.0] * len(truth)
    if target_stacks is not None:
        if target_normalization is None:
            raise ValueError("target_stacks need a target_normalization")
        truth = _check_targets(stacks, target_stacks)
        brightness = [
            target_normalization.brightness_ratio(s.data, t.data, normalization)
            for s, t in zip(stacks, truth, strict=True)
        ]
        ratios = [target_normalization.ratio(b) for b in brightness]
    width = float(bin_um) if bin_um else bin_width_um(list(stacks))
    if not (np.isfinite(width) and width > 0):
        raise ValueError(f"bin_um must be positive, got {bin_um}")
    # objects beyond the virtual stack would have their peak clamped to its edge
    reach = min(
        dz_range_um,
        float(axial_range_um)
        if axial_range_um is not None
        else max(1.0, dz_range_um - 3.0),
    )
    cross = target_stacks is not None
    # a refocusing model is scored away from focus; a cross-modal one also at focus
    min_dz = 0.0 if cross else 0.5
    sums: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    axial_all: list[float] = []
    baseline_all: list[float] = []
    kept_sections: list[AxialSection] = []
    clean_targets = not cross and all(s.clean is not None for s in stacks)
    jobs = [
        (n, i)
        for n, stack in enumerate(stacks)
        for i in choose_input_planes(stack.z_um, dz_range_um, inputs_per_stack)
    ]
    objects_of: dict[int, np.ndarray] = {}
    for done, (n, i) in enumerate(jobs):
        stack = stacks[n]
        window = centre_crop_window(stack, crop)
        planes = stack.data[:, window[0], window[1]]
        true_planes = truth[n].data[:, window[0], window[1]]
        clean_planes = (
            None
            if cross or stack.clean is None
            else stack.clean[:, window[0], window[1]]
        )
        dz = stack.z_um - stack.z_um[i]
        in_range = np.flatnonzero(np.abs(dz) <= dz_range_um + 1e-6)
        scored = in_range[np.abs(dz[in_range]) >= min_dz]
        if scored.size == 0:
            continue
        scale = normalization.scale_of(planes[i])
        source = normalization.apply(planes[i], scale)
        predicted = predict(source, dz[in_range])
        # the identity in the target's units: brightness-matched input plane
        identity = source * np.float32(brightness[n] / ratios[n])
        for k, j in zip(np.searchsorted(in_range, scored), scored, strict=True):
            if target_normalization is not None and target_stacks is not None:
                target = target_normalization.apply(true_planes[j], scale, ratios[n])
            else:
                target = normalization.apply(true_planes[j], scale)
            key = _bin_key(abs(dz[j]), width)
            _score(sums[key], "", predicted[k], identity, target)
            if clean_targets and clean_planes is not None:
                clean = normalization.apply(clean_planes[j], scale)
                _score(sums[key], "_clean", predicted[k], identity, clean)
        if not cross:
            if n not in objects_of:
                objects_of[n] = _scored_objects(
                    stack, clean_planes, planes, normalization, isolation_um
                )
            objects = objects_of[n]
            near = np.abs(objects[:, 0] - stack.z_um[i]) <= reach + 1e-6
            z_virtual = stack.z_um[in_range]
            found = peak_z(
                profiles(predicted, objects[near, 1], objects[near, 2]), z_virtual
            )
            for (z_true, _, _), z_model in zip(objects[near], found, strict=True):
                error = float(z_model - z_true)
                baseline = float(stack.z_um[i] - z_true)
                key = _bin_key(abs(z_true - stack.z_um[i]), width)
                sums[key]["axial"].append(error)
                sums[key]["axial_baseline"].append(baseline)
                axial_all.append(error)
                baseline_all.append(baseline)
            if len(kept_sections) < sections and np.any(near):
                kept_sections.append(
                    _section(
                        stack,
                        i,
                        objects[near],
                        predicted,
                        in_range,
                        source,
                        clean_planes if clean_planes is not None else planes,
                        normalization,
                        scale,
                    )
                )
        if progress is not None:
            progress(done + 1, len(jobs))
    bins = [_bin_metrics(key * width, values) for key, values in sorted(sums.items())]
    notes = []
    if target_stacks is not None:
        notes.append(
            "cross-modality: targets from "
            + ", ".join(t.source for t in truth)
            + "; identity = input plane × robust target/input brightness ratio ("
            + ", ".join(f"{b:.3g}" for b in brightness)
            + ")"
        )
    else:
        notes.append(
            "axial: objects are 3-D maxima of the "
            + (
                "noise-free twin"
                if clean_targets
                else "noise-free twin where a stack has one, else of the smoothed "
                "recorded planes"
            )
            + f", laterally isolated by {isolation_um:g} µm, scored within "
            f"±{reach:g} µm of the input plane; baseline: every object in the "
            "input (focal) plane"
        )
    return EvaluationResult(
        model=model_name,
        stacks=[s.source for s in stacks],
        notes=notes,
        bins=bins,
        inputs_per_stack=inputs_per_stack,
        crop=crop,
        bin_um=width,
        clean_targets=clean_targets,
        axial_range_um=None if cross else reach,
        axial_errors_um=axial_all,
        axial_baseline_errors_um=baseline_all,
        sections=kept_sections,
    )


def _bin_key(distance: float, width: float) -> int:
    """Index of the bin centred on a multiple of ``width`` that holds ``distance``."""
    return int(np.floor(distance / width + 0.5 + 1e-9))


def _score(
    into: dict[str, list[float]],
    suffix: str,
    predicted: np.ndarray,
    identity: np.ndarray,
    target: np.ndarray,
) -> None:
    data_range = float(target.max() - target.min()) or 1.0
    for name, guess in (("model", predicted), ("identity", identity)):
        into[f"psnr_{name}{suffix}"].append(psnr(guess, target, data_range))
        into[f"ssim_{name}{suffix}"].append(ssim(guess, target, data_range))
        if not suffix:
            into[f"nrmse_{name}"].append(nrmse(guess, target))


def _bin_metrics(centre: float, values: dict[str, list[float]]) -> BinMetrics:
    means = {
        name: float(np.mean(v))
        for name, v in values.items()
        if v and not name.startswith("axial")
    }
    median, within = _axial_summary(values.get("axial", []))
    base, base_within = _axial_summary(values.get("axial_baseline", []))
    return BinMetrics(
        dz_um=float(centre),
        pairs=len(values.get("psnr_model", [])),
        **means,
        axial_objects=len(values.get("axial", [])),
        axial_error_median_um=median,
        axial_within_1um_fraction=within,
        axial_baseline_median_um=base,
        axial_baseline_within_1um_fraction=base_within,
    )


def _scored_objects(
    stack: ZStack,
    clean_planes: np.ndarray | None,
    planes: np.ndarray,
    normalization: Normalization,
    isolation_um: float,
) -> np.ndarray:
    """Isolated objects of a stack's window, from its clean twin if it has one."""
    volume = clean_planes if clean_planes is not None else planes
    objects = find_objects(
        volume - np.float32(normalization.offset),
        stack.z_um,
        smooth=clean_planes is None,
    )
    keep = isolated(objects, isolation_um / stack.pixel_um[1])
    return objects[keep]


def _section(
    stack: ZStack,
    input_index: int,
    objects: np.ndarray,
    predicted: np.ndarray,
    in_range: np.ndarray,
    source: np.ndarray,
    scan_planes: np.ndarray,
    normalization: Normalization,
    scale: float,
) -> AxialSection:
    """XZ/YZ sections through the brightest-in-focus object far from the input."""
    offsets = np.abs(objects[:, 0] - stack.z_um[input_index])
    z_true, y, x = objects[int(np.argmax(offsets))]
    yi, xi = round(y), round(x)
    scan = normalization.apply(scan_planes[in_range], scale)
    identity = np.repeat(source[None], in_range.size, axis=0)
    return AxialSection(
        source=stack.source,
        input_z_um=float(stack.z_um[input_index]),
        object_zyx=(float(z_true), float(y), float(x)),
        z_um=stack.z_um[in_range].copy(),
        pixel_um=float(stack.pixel_um[1]),
        scan=(scan[:, yi, :].copy(), scan[:, :, xi].copy()),
        model=(predicted[:, yi, :].copy(), predicted[:, :, xi].copy()),
        identity=(identity[:, yi, :].copy(), identity[:, :, xi].copy()),
    )


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


def write_json(result: EvaluationResult, path: str | Path) -> None:
    Path(path).write_text(json.dumps(result.to_dict(), indent=2))
