"""Tables of the depth-information benchmark (`bench_depth_information.py`).

Reads ``rows.csv`` of one or more result folders. Rows of the same object (stack,
input plane, nucleus, position) are joined across folders, so that a folder with more
light levels (e.g. ``--levels 0.01 0.03 --no-real``) adds columns to the tables.
Prints Markdown (README, "How much depth one frame holds")::

    python benchmarks/depth_information_summary.py [OUT [OUT2 ...]]

``OUT`` defaults to ``runs/depth-information``.

Errors are the estimated minus the true best-focus stage position of each nucleus
(``focus_z`` of the simulator's objects table); the sign tests count the objects
1.5-7 µm from the input plane whose likelihood puts them on the right side of it.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable

DEFAULT_FOLDER = Path("runs/depth-information")
#: column infix and table label of each observer, in table order
OBSERVERS = (
    ("known", "ideal (depth only unknown)"),
    ("amp", "+ brightness unknown"),
    ("ampr", "+ brightness & radius unknown"),
    ("ampbg", "brightness unknown, rest of specimen = unknown plane"),
)
RECORDED = "real1"  # column prefix of the recorded frame
WITHIN_UM = 1.0
SIGN_TEST_UM = (1.5, 7.0)  # true distances from the input plane of the sign tests
#: scored against the scan-peak z as well (the dim levels, where it matters)
SCAN_PEAK_LEVELS = (RECORDED, "sim0.1", "sim0.3")
DISTANCE_BINS_UM = ((0, 0.5), (0.5, 1.5), (1.5, 3), (3, 5), (5, 7.01))

Row = dict[str, str]


class ErrorStats(NamedTuple):
    """Summary of absolute errors (µm)."""

    n: int
    median: float
    within: float  # fraction within WITHIN_UM
    mean: float
    p90: float


def load_rows(folders: Iterable[Path]) -> list[Row]:
    """Rows of every folder's rows.csv, joined per object (first-seen order)."""
    merged: dict[tuple[str, ...], Row] = {}
    for folder in folders:
        with (Path(folder) / "rows.csv").open(newline="") as fh:
            for row in csv.DictReader(fh):
                key = tuple(
                    row[k] for k in ("seed", "input_z", "emitter", "obj_y", "obj_x")
                )
                merged.setdefault(key, {}).update(row)
    return list(merged.values())


def column(rows: list[Row], key: str) -> np.ndarray:
    """One column as floats; NaN where a row lacks it or it is empty."""
    return np.array([float(r[key]) if r.get(key, "") != "" else np.nan for r in rows])


def error_stats(errors: np.ndarray) -> ErrorStats | None:
    """Statistics of the finite ``|errors|``; None when there are none."""
    magnitude = np.abs(errors[np.isfinite(errors)])
    if not magnitude.size:
        return None
    return ErrorStats(
        magnitude.size,
        float(np.median(magnitude)),
        float(np.mean(magnitude <= WITHIN_UM + 1e-9)),
        float(np.mean(magnitude)),
        float(np.percentile(magnitude, 90)),
    )


def level_order(level: str) -> tuple[float, bool]:
    """Sort key of a frame name (``sim0.3``, ``real1``): light, then recorded last."""
    scale = float(level.removeprefix("sim").removeprefix("real"))
    return scale, level.startswith("real")


def level_label(level: str) -> str:
    """Table label of a frame name."""
    if level.startswith("real"):
        return "recorded frame 1×"
    return f"simulated {level.removeprefix('sim')}×"


def print_overview(rows: list[Row]) -> None:
    """Object counts, the truth checks, photon budget and the focal-plane baseline."""
    dz = column(rows, "dz_true")
    nuclei = {(r["seed"], r["emitter"]) for r in rows}
    kernel_error = column(rows, "kernel_rel_err")
    print(
        f"objects (object x input plane): {len(rows)}; distinct nuclei: {len(nuclei)}"
    )
    print(
        f"max lateral match distance {np.max(column(rows, 'lat_match_px')):.2f} px; "
        "kernel check (my U(d_true) vs simulator kernel, rel. L2): "
        f"median {np.median(kernel_error):.4f}, max {np.max(kernel_error):.4f}"
    )
    peak_minus_focus = np.abs(column(rows, "eval_z_true") - column(rows, "focus_true"))
    print(
        "scan peak z (evaluate's truth) − focus_z (csv): "
        f"median |diff| {np.median(peak_minus_focus):.2f} µm, "
        f"90th pct {np.percentile(peak_minus_focus, 90):.2f}, "
        f"max {np.max(peak_minus_focus):.2f}"
    )
    photons = column(rows, "photons_in_frame")
    print(
        "photons per nucleus per live frame (detected, before QE): "
        f"median {np.median(photons):.0f} "
        f"(range {photons.min():.0f}–{photons.max():.0f})"
    )
    # the baseline puts every nucleus in the input plane: its error is the distance
    vs_focus = error_stats(dz)
    vs_peak = error_stats(column(rows, "eval_z_true") - column(rows, "input_z"))
    if vs_focus is None or vs_peak is None:
        raise ValueError("no finite distances to the input planes")
    print(
        f"\nbaseline 'all in focal plane': vs focus_z n={vs_focus.n} "
        f"median {vs_focus.median:.2f} µm, "
        f"within {WITHIN_UM:g} µm {vs_focus.within:.0%}; "
        f"vs scan peak z (as deepz evaluate): median {vs_peak.median:.2f}, "
        f"within {WITHIN_UM:g} µm {vs_peak.within:.0%}"
    )


def sign_test_mask(rows: list[Row]) -> np.ndarray:
    """Objects whose true distance from the input plane is in ``SIGN_TEST_UM``."""
    distance = np.abs(column(rows, "dz_true"))
    return (distance >= SIGN_TEST_UM[0]) & (distance <= SIGN_TEST_UM[1])


def print_level_table(rows: list[Row]) -> None:
    """Errors and sign tests per light level and observer."""
    dz = column(rows, "dz_true")
    input_z = column(rows, "input_z")
    far = sign_test_mask(rows)
    low, high = SIGN_TEST_UM
    print(f"sign test population ({low:g} ≤ |dz| ≤ {high:g} µm): {far.sum()}")
    levels = sorted(
        {key.split("_")[0] for r in rows for key in r if key.endswith("_known_err")},
        key=level_order,
    )
    print(
        f"\n| light | observer | n | median |Δz| µm | within {WITHIN_UM:g} µm "
        "| mean |Δz| "
        "| 90th pct | sign: LL(true) > LL(mirror) | sign: ML on true side |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for level in levels:
        label = level_label(level)
        for key, name in OBSERVERS:
            prefix = f"{level}_{key}"
            if not any(f"{prefix}_err" in r for r in rows):
                continue
            stats = error_stats(column(rows, f"{prefix}_err"))
            if stats is None:
                continue
            dll = column(rows, f"{prefix}_dll_true_minus_mirror")
            predicted = column(rows, f"{prefix}_pred")
            tested = far & np.isfinite(dll)
            sign_ll = np.mean(dll[tested] > 0)
            side = np.mean(
                np.sign(predicted[tested] - input_z[tested]) == np.sign(dz[tested])
            )
            print(
                f"| {label} | {name} | {stats.n} | {stats.median:.2f} "
                f"| {stats.within:.0%} | {stats.mean:.2f} | {stats.p90:.2f} "
                f"| {sign_ll:.0%} | {side:.0%} |"
            )


def print_against_scan_peak(rows: list[Row]) -> None:
    """Errors of the dim levels against the scan-peak z `deepz evaluate` scores."""
    print(
        "\nAgainst deepz evaluate's truth (scan peak z of the clean twin) "
        "instead of focus_z:"
    )
    scan_peak = column(rows, "eval_z_true")
    for level in SCAN_PEAK_LEVELS:
        for key, name in OBSERVERS:
            predicted_key = f"{level}_{key}_pred"
            if predicted_key not in rows[0]:
                continue
            stats = error_stats(column(rows, predicted_key) - scan_peak)
            if stats is None:
                continue
            print(
                f"  {level} {name}: median {stats.median:.2f} µm, "
                f"within {WITHIN_UM:g} µm {stats.within:.0%}"
            )


def print_distance_table(rows: list[Row]) -> None:
    """Errors on the recorded frame by true distance from the input plane."""
    print(
        "\nBy true distance from the input plane "
        f"(recorded 1× frame; median |Δz| µm / within {WITHIN_UM:g} µm):"
    )
    print(
        "| observer | "
        + " | ".join(f"{lo}–{hi:g} µm" for lo, hi in DISTANCE_BINS_UM)
        + " |"
    )
    print("|---" * (len(DISTANCE_BINS_UM) + 1) + "|")
    distance = np.abs(column(rows, "dz_true"))
    lines = [("baseline", distance)]
    lines += [
        (name, column(rows, f"{RECORDED}_{key}_err"))
        for key, name in OBSERVERS
        if f"{RECORDED}_{key}_err" in rows[0]
    ]
    for name, errors in lines:
        cells = []
        for lo, hi in DISTANCE_BINS_UM:
            stats = error_stats(errors[(distance >= lo) & (distance < hi)])
            cells.append(
                f"{stats.median:.2f} / {stats.within:.0%} (n={stats.n})"
                if stats is not None
                else "–"
            )
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    """Command line: print the tables of the given result folders."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "folders",
        nargs="*",
        type=Path,
        default=[DEFAULT_FOLDER],
        metavar="OUT",
        help=f"result folders with rows.csv (default {DEFAULT_FOLDER})",
    )
    folders = parser.parse_args().folders
    missing = [str(f) for f in folders if not (f / "rows.csv").is_file()]
    if missing:
        parser.error(f"no rows.csv in {', '.join(missing)}")
    rows = load_rows(folders)
    if not rows:
        parser.error("no rows")
    print_overview(rows)
    print_level_table(rows)
    print_against_scan_peak(rows)
    print_distance_table(rows)


if __name__ == "__main__":
    main()
