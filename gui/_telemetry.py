"""Run telemetry: how fast, how late, how much light.

`Telemetry` is plain data (no Qt); `Telemetry.from_stats` reads a live session's stats
snapshot, whatever its exact field names, so the names are fixed in one place.
`TelemetryWidget` shows one `Telemetry`, formatted.

Light dose is shown per volume and for the whole run, next to what a scanned z-stack
of the same volumes would have cost: one exposure per plane of the volume instead of
one per frame, so the factor is the volume's plane count
(`acquisition.equivalent_zstack_dose`, the rule the session's own figures follow).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QFont
from qtpy.QtWidgets import QGridLayout, QGroupBox, QLabel, QVBoxLayout, QWidget

from deepz_live.acquisition import equivalent_zstack_dose

__all__ = [
    "Telemetry",
    "TelemetryWidget",
    "format_count",
    "format_dose",
    "format_ms",
    "format_rate",
]

_DASH = "–"


# accepted spellings of each Telemetry field in a session's stats (first match wins)
_STATS_ALIASES: dict[str, tuple[str, ...]] = {
    "frames_per_s": ("frames_per_s", "fps", "frame_rate_hz", "frames_per_second"),
    "volumes_per_s": ("volumes_per_s", "vps", "volume_rate_hz"),
    "latency_p50_ms": ("latency_p50_ms", "p50_ms", "latency_ms_p50"),
    "latency_p99_ms": ("latency_p99_ms", "p99_ms", "latency_ms_p99"),
    "frames": ("frames", "frames_acquired", "n_frames"),
    "volumes": ("volumes", "volumes_done", "volumes_ready", "n_volumes"),
    "skipped_frames": ("skipped_frames", "skipped", "frames_skipped", "dropped"),
    "queue_depth": ("queue_depth", "queue", "queued"),
    "dose_per_frame_J_cm2": ("dose_per_frame_J_cm2", "dose_per_frame"),
    "cumulative_dose_J_cm2": (
        "cumulative_dose_J_cm2",
        "dose_total_J_cm2",
        "cumulative_dose",
    ),
    "equivalent_zstack_dose_J_cm2": (
        "equivalent_zstack_dose_J_cm2",
        "zstack_dose_J_cm2",
    ),
}


@dataclass(frozen=True)
class Telemetry:
    """One snapshot of a run's numbers; None means "not known (yet)"."""

    frames_per_s: float | None = None
    volumes_per_s: float | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    frames: int | None = None
    volumes: int | None = None
    skipped_frames: int | None = None
    queue_depth: int | None = None
    dose_per_frame_J_cm2: float | None = None
    cumulative_dose_J_cm2: float | None = None
    equivalent_zstack_dose_J_cm2: float | None = None
    zstack_planes: int | None = None
    redraws_per_s: float | None = None

    @classmethod
    def from_stats(
        cls, stats: Any, *, planes_per_volume: int | None = None
    ) -> Telemetry:
        """Read a stats snapshot: a mapping, a dataclass or any object with attributes.

        With ``planes_per_volume`` (the planes of the volumes shown), the equivalent
        z-stack dose is the run's dose × that plane count: scanning the same volumes
        plane by plane, one exposure per plane at the same dose per exposure, instead
        of taking one frame per volume. Without it, the session's own figure is shown.
        """
        if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
            stats = dataclasses.asdict(stats)
        elif hasattr(stats, "model_dump"):
            stats = stats.model_dump()

        def get(name: str) -> Any:
            for key in _STATS_ALIASES[name]:
                if isinstance(stats, Mapping):
                    if stats.get(key) is not None:
                        return stats[key]
                elif getattr(stats, key, None) is not None:
                    return getattr(stats, key)
            return None

        values = {name: get(name) for name in _STATS_ALIASES}
        total, per_frame = (
            values["cumulative_dose_J_cm2"],
            values["dose_per_frame_J_cm2"],
        )
        if total is None and per_frame is not None and values["frames"] is not None:
            total = values["cumulative_dose_J_cm2"] = (
                float(per_frame) * values["frames"]
            )
        if planes_per_volume:
            values["zstack_planes"] = int(planes_per_volume)
            values["equivalent_zstack_dose_J_cm2"] = equivalent_zstack_dose(
                total, int(planes_per_volume)
            )
        elif values["equivalent_zstack_dose_J_cm2"] is not None and total:
            values["zstack_planes"] = round(
                float(values["equivalent_zstack_dose_J_cm2"]) / float(total)
            )
        return cls(**values)

    @property
    def zstack_dose_per_volume_J_cm2(self) -> float | None:
        """The dose of scanning one volume as a z-stack (per frame × planes)."""
        if not self.zstack_planes:
            return None
        return equivalent_zstack_dose(self.dose_per_frame_J_cm2, self.zstack_planes)

    def with_redraw_rate(self, redraws_per_s: float) -> Telemetry:
        """A copy with the panel's own redraw rate."""
        return dataclasses.replace(self, redraws_per_s=redraws_per_s)


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def format_rate(value: float | None, unit: str = "/s") -> str:
    """``95.3 /s``; three significant digits, at least one decimal below 100."""
    if _missing(value):
        return _DASH
    assert value is not None
    if abs(value) >= 100:
        return f"{value:.0f} {unit}"
    return f"{value:.1f} {unit}" if abs(value) >= 10 else f"{value:.2f} {unit}"


def format_ms(value: float | None) -> str:
    """``812 ms``, ``12.5 ms``, ``1.84 s``."""
    if _missing(value):
        return _DASH
    assert value is not None
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def format_count(value: int | None) -> str:
    """``12 345`` (thin-space thousands)."""
    if value is None:
        return _DASH
    return f"{int(value):,}".replace(",", "\u2009")


_SI = ((1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"))


def format_dose(value: float | None, unit: str = "J/cm²") -> str:
    """A light dose with an SI prefix: ``2.00 mJ/cm²``, ``350 µJ/cm²``."""
    if _missing(value):
        return _DASH
    assert value is not None
    if value == 0:
        return f"0 {unit}"
    scale, prefix = next(((s, p) for s, p in _SI if abs(value) >= s), _SI[-1])
    mantissa = value / scale
    digits = 2 if abs(mantissa) < 10 else 1 if abs(mantissa) < 100 else 0
    return f"{mantissa:.{digits}f} {prefix}{unit}"


_ROWS: tuple[tuple[str, str, str], ...] = (
    ("frames_per_s", "Frames/s", "Camera frames acquired per second"),
    ("volumes_per_s", "Volumes/s", "Virtual volumes refocused per second"),
    ("latency_p50_ms", "Latency p50", "Frame exposure to volume ready, median"),
    (
        "latency_p99_ms",
        "Latency p99",
        "Frame exposure to volume ready, 99th percentile",
    ),
    ("frames", "Frames", "Frames acquired (all saved)"),
    ("volumes", "Volumes", "Volumes refocused"),
    ("skipped_frames", "Skipped", "Frames not refocused because inference was busy"),
    ("queue_depth", "Queue", "Frames waiting for inference"),
    ("redraws_per_s", "Redraws/s", "Panel redraws per second (throttled to ~30)"),
)

# the light-dose table: (key, row, column); rows "this run" / z-stack, columns per
# volume / run total
_DOSE_CELLS: tuple[tuple[str, int, int, str], ...] = (
    ("dose_per_frame_J_cm2", 1, 1, "Light of one exposure: all that a volume cost"),
    ("cumulative_dose_J_cm2", 1, 2, "Light delivered in this run so far"),
    (
        "zstack_dose_per_volume_J_cm2",
        2,
        1,
        "Scanning one volume's planes as a z-stack: one exposure per plane",
    ),
    (
        "equivalent_zstack_dose_J_cm2",
        2,
        2,
        "Scanning every volume of this run as a z-stack of the same planes",
    ),
)


class TelemetryWidget(QGroupBox):
    """Frames/s, volumes/s, latency p50/p99, skipped frames and light dose.

    The dose is a small table: per volume and for the run so far, for this run (one
    frame per volume) and for scanned z-stacks of the same planes.
    """

    def __init__(self, *, columns: int = 1, parent: QWidget | None = None) -> None:
        super().__init__("Telemetry", parent)
        self._values: dict[str, QLabel] = {}
        self._telemetry = Telemetry()
        layout = QVBoxLayout(self)
        grid = QGridLayout()
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(2)
        value_font = QFont()
        value_font.setPointSizeF(value_font.pointSizeF() * 1.15)
        value_font.setBold(True)
        for row, (key, title, tip) in enumerate(_ROWS):
            name = QLabel(title)
            name.setToolTip(tip)
            value = self._value_label(key, tip, value_font)
            rows = -(-len(_ROWS) // columns)
            grid.addWidget(name, row % rows, 3 * (row // rows))
            grid.addWidget(value, row % rows, 3 * (row // rows) + 1)
            if row // rows:  # a gap between column pairs
                grid.setColumnMinimumWidth(3 * (row // rows) - 1, 16)
        layout.addLayout(grid)
        dose = QGridLayout()
        dose.setHorizontalSpacing(10)
        dose.setVerticalSpacing(2)
        for column, title in ((0, "Light dose"), (1, "per volume"), (2, "run total")):
            header = QLabel(title)
            if column:
                header.setAlignment(
                    Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                )
            dose.addWidget(header, 0, column)
        dose.addWidget(QLabel("this run (1 frame per volume)"), 1, 0)
        self._zstack_label = QLabel()
        dose.addWidget(self._zstack_label, 2, 0)
        for key, row, column, tip in _DOSE_CELLS:
            dose.addWidget(self._value_label(key, tip, value_font), row, column)
        dose.setColumnStretch(0, 1)
        layout.addLayout(dose)
        self._saving = QLabel("")
        self._saving.setObjectName("dose_saving")
        self._saving.setWordWrap(True)
        layout.addWidget(self._saving)
        layout.addStretch(1)
        self.set_telemetry(Telemetry())

    def _value_label(self, key: str, tip: str, font: QFont) -> QLabel:
        """A right-aligned, selectable value label, registered under ``key``."""
        value = QLabel(_DASH)
        value.setObjectName(key)
        value.setFont(font)
        value.setToolTip(tip)
        value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._values[key] = value
        return value

    @property
    def telemetry(self) -> Telemetry:
        """The snapshot shown."""
        return self._telemetry

    def set_telemetry(self, telemetry: Telemetry) -> None:
        """Show ``telemetry``."""
        self._telemetry = telemetry
        t = telemetry
        texts = {
            "frames_per_s": format_rate(t.frames_per_s),
            "volumes_per_s": format_rate(t.volumes_per_s),
            "latency_p50_ms": format_ms(t.latency_p50_ms),
            "latency_p99_ms": format_ms(t.latency_p99_ms),
            "frames": format_count(t.frames),
            "volumes": format_count(t.volumes),
            "skipped_frames": format_count(t.skipped_frames),
            "queue_depth": format_count(t.queue_depth),
            "dose_per_frame_J_cm2": format_dose(t.dose_per_frame_J_cm2),
            "cumulative_dose_J_cm2": format_dose(t.cumulative_dose_J_cm2),
            "equivalent_zstack_dose_J_cm2": format_dose(t.equivalent_zstack_dose_J_cm2),
            "zstack_dose_per_volume_J_cm2": format_dose(t.zstack_dose_per_volume_J_cm2),
            "redraws_per_s": format_rate(t.redraws_per_s),
        }
        for key, text in texts.items():
            self._values[key].setText(text)
        planes = t.zstack_planes
        self._zstack_label.setText(
            f"as {planes}-plane z-stacks" if planes else "as scanned z-stacks"
        )
        if planes and not _missing(t.dose_per_frame_J_cm2) and t.dose_per_frame_J_cm2:
            self._saving.setText(
                f"Scanning the same {planes} planes as a z-stack would take "
                f"{planes}× the light per volume."
            )
        else:
            self._saving.setText("")

    def text(self, key: str) -> str:
        """The text shown for field ``key`` (a `Telemetry` field or property name).

        ``dose_saving`` is the sentence under the dose table, ``zstack_label`` the
        z-stack row's title.
        """
        if key == "dose_saving":
            return self._saving.text()
        if key == "zstack_label":
            return self._zstack_label.text()
        return self._values[key].text()
