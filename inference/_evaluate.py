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

from inference._metrics import nrmse, psnr, ssim
from inference._pairs import _check_targets

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from inference._normalize import Normalization
    from inference._pairs import TargetNormalization
    from inference._stacks import ZStack

#: predict(normalized_input (Y, X), dz_um (N,)) -> normalized outputs (N, Y, X)
Predictor = "Callable[[np.ndarray, np.ndarray], np.ndarray]"


@dataclass(frozen=True)
class BinMetrics:
    """Mean metrics of all pairs whose |dz| rounds to ``dz_um``."""

    dz_um: float
    pairs: int
    psnr_model: float
    psnr_identity: float
    ssim_model: float
    ssim_identity: float
    nrmse_model: float
    nrmse_identity: float

    @property
    def psnr_gain_db(self) -> float:
        return self.psnr_model - self.psnr_identity


@dataclass
class EvaluationResult:
    """Per-|dz| metrics for a model and the identity baseline."""

    model: str
    stacks: list[str]
    bins: list[BinMetrics]
    inputs_per_stack: int | None
    crop: int | None
    notes: list[str] = field(default_factory=list)

    def mean_psnr_gain_db(self, lo: float = 1.0, hi: float = np.inf) -> float | None:
        """Mean PSNR gain (dB) over the bins with lo ≤ |dz| ≤ hi."""
        gains = [b.psnr_gain_db for b in self.bins if lo <= b.dz_um <= hi]
        return float(np.mean(gains)) if gains else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``deepz evaluate --json``."""
        return {
            "model": self.model,
            "stacks": self.stacks,
            "inputs_per_stack": self.inputs_per_stack,
            "crop": self.crop,
            "bins": [{k: _round(v) for k, v in asdict(b).items()} for b in self.bins],
            "mean_psnr_gain_db": _round(self.mean_psnr_gain_db(1.0)),
            "mean_psnr_gain_db_2_to_10um": _round(self.mean_psnr_gain_db(2.0, 10.0)),
            "notes": self.notes,
        }

    def table(self) -> str:
        """A Markdown table per |dz| bin."""
        lines = [
            "| abs(dz) µm | pairs | PSNR model | PSNR identity | gain dB | "
            "SSIM model | SSIM identity |",
            "|---|---|---|---|---|---|---|",
        ]
        lines.extend(
            f"| {b.dz_um:g} | {b.pairs} | {b.psnr_model:.2f} | "
            f"{b.psnr_identity:.2f} | {b.psnr_gain_db:+.2f} | "
            f"{b.ssim_model:.3f} | {b.ssim_identity:.3f} |"
            for b in self.bins
        )
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
    # a refocusing model is scored away from focus; a cross-modal one also at focus
    min_dz = 0.0 if target_stacks is not None else 0.5
    sums: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    jobs = [
        (n, i)
        for n, stack in enumerate(stacks)
        for i in choose_input_planes(stack.z_um, dz_range_um, inputs_per_stack)
    ]
    for done, (n, i) in enumerate(jobs):
        stack = stacks[n]
        window = centre_crop_window(stack, crop)
        planes = stack.data[:, window[0], window[1]]
        true_planes = truth[n].data[:, window[0], window[1]]
        dz = stack.z_um - stack.z_um[i]
        targets = np.flatnonzero(
            (np.abs(dz) <= dz_range_um + 1e-6) & (np.abs(dz) >= min_dz)
        )
        if targets.size == 0:
            continue
        scale = normalization.scale_of(planes[i])
        source = normalization.apply(planes[i], scale)
        predicted = predict(source, dz[targets])
        # the identity in the target's units: brightness-matched input plane
        identity = source * np.float32(brightness[n] / ratios[n])
        for k, j in enumerate(targets):
            if target_normalization is not None and target_stacks is not None:
                target = target_normalization.apply(true_planes[j], scale, ratios[n])
            else:
                target = normalization.apply(true_planes[j], scale)
            data_range = float(target.max() - target.min()) or 1.0
            key = int(np.floor(abs(dz[j]) + 0.5))
            for name, guess in (("model", predicted[k]), ("identity", identity)):
                sums[key][f"psnr_{name}"].append(psnr(guess, target, data_range))
                sums[key][f"ssim_{name}"].append(ssim(guess, target, data_range))
                sums[key][f"nrmse_{name}"].append(nrmse(guess, target))
        if progress is not None:
            progress(done + 1, len(jobs))
    bins = [
        BinMetrics(
            dz_um=float(key),
            pairs=len(values["psnr_model"]),
            **{name: float(np.mean(v)) for name, v in values.items()},
        )
        for key, values in sorted(sums.items())
    ]
    notes = []
    if target_stacks is not None:
        notes.append(
            "cross-modality: targets from "
            + ", ".join(t.source for t in truth)
            + "; identity = input plane × robust target/input brightness ratio ("
            + ", ".join(f"{b:.3g}" for b in brightness)
            + ")"
        )
    return EvaluationResult(
        model=model_name,
        stacks=[s.source for s in stacks],
        notes=notes,
        bins=bins,
        inputs_per_stack=inputs_per_stack,
        crop=crop,
    )


def plot_evaluation(result: EvaluationResult, path: str | Path) -> Path:
    """PSNR and SSIM versus |dz| for the model and the identity baseline (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dz = [b.dz_um for b in result.bins]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, metric, unit in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim", "SSIM")):
        ax.plot(dz, [getattr(b, f"{metric}_model") for b in result.bins], "o-",
                label=f"model ({result.model})")  # fmt: skip
        ax.plot(dz, [getattr(b, f"{metric}_identity") for b in result.bins], "s--",
                color="grey", label="identity (input plane)")  # fmt: skip
        ax.set_xlabel("|dz| (µm)")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
        ax.legend()
    gain = result.mean_psnr_gain_db(2.0, 10.0)
    title = f"{len(result.stacks)} stack(s)"
    in_range = [b.dz_um for b in result.bins if 2.0 <= b.dz_um <= 10.0]
    if gain is not None:
        span = f"{min(in_range):g}-{max(in_range):g}"
        title += f"; mean PSNR gain over |dz| {span} µm: {gain:+.2f} dB"
    fig.suptitle(title)
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def write_json(result: EvaluationResult, path: str | Path) -> None:
    Path(path).write_text(json.dumps(result.to_dict(), indent=2))
