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

The result and its table and JSON are `EvaluationResult`; its figure is
`plot_evaluation`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np

from deepz_live.inference._depth import (
    bin_width_um,
    find_objects,
    isolated,
    peak_z,
    profiles,
)
from deepz_live.inference._errors import InferenceError
from deepz_live.inference._evaluation_result import (
    AxialSection,
    BinMetrics,
    EvaluationResult,
    axial_summary,
)
from deepz_live.inference._metrics import gaussian_window_1d, nrmse, psnr, ssim
from deepz_live.inference._targets import check_target_stacks

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from deepz_live.inference._normalize import Normalization
    from deepz_live.inference._target_normalization import TargetNormalization
    from deepz_live.inference._zstack import ZStack

__all__ = [
    "MIN_EVALUATION_WINDOW_PX",
    "centre_crop_window",
    "choose_input_planes",
    "evaluate_stacks",
]

#: The smallest window (px, each side) that can be scored: the SSIM's Gaussian
#: window at `ssim`'s default sigma (1.5 px: 11 px).
MIN_EVALUATION_WINDOW_PX = int(gaussian_window_1d(1.5).size)


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
        for `plot_evaluation`.

    Raises
    ------
    ValueError
        Target stacks without a target normalization, or that do not match the
        stacks one to one; fewer than one input per stack, a negative isolation.
    InferenceError
        A window to score (the crop, or the whole stack) smaller than
        `MIN_EVALUATION_WINDOW_PX`: found before anything is predicted.
    """
    if inputs_per_stack is not None and inputs_per_stack < 1:
        raise ValueError(f"inputs_per_stack must be at least 1, got {inputs_per_stack}")
    if not (np.isfinite(isolation_um) and isolation_um >= 0):
        raise ValueError(f"isolation_um must be 0 or more, got {isolation_um}")
    for stack in stacks:
        rows, columns = stack.shape[1:]
        if crop is not None:  # the size of `centre_crop_window`
            rows, columns = min(crop, rows), min(crop, columns)
        least = MIN_EVALUATION_WINDOW_PX
        if min(rows, columns) < least:
            raise InferenceError(
                f"{stack.source}: the window to score is {rows}×{columns} px, smaller "
                f"than the {least}×{least} px SSIM window; score a larger region (a "
                f"crop of at least {least} px, or 0 for the whole frame; wider "
                "--x-range/--y-range bands)."
            )
    truth = list(stacks)
    brightness = ratios = [1.0] * len(truth)
    if target_stacks is not None:
        if target_normalization is None:
            raise ValueError("target_stacks need a target_normalization")
        truth = check_target_stacks(stacks, target_stacks)
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
    median, within = axial_summary(values.get("axial", []))
    base, base_within = axial_summary(values.get("axial_baseline", []))
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
