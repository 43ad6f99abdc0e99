"""Telemetry: reading a session's stats and showing the numbers, formatted."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from deepz_live.gui import Telemetry, TelemetryWidget
from deepz_live.gui._telemetry import format_dose, format_ms, format_rate


def test_formatting():
    assert format_rate(95.25) == "95.2 /s"
    assert format_rate(1.0234) == "1.02 /s"
    assert format_rate(312.4) == "312 /s"
    assert format_rate(None) == "–"
    assert format_rate(float("nan")) == "–"
    assert format_ms(12.345) == "12.3 ms"
    assert format_ms(812.4) == "812 ms"
    assert format_ms(1840.0) == "1.84 s"
    assert format_dose(2e-3) == "2.00 mJ/cm²"
    assert format_dose(0.84) == "840 mJ/cm²"
    assert format_dose(3.5e-4) == "350 µJ/cm²"
    assert format_dose(12.0) == "12.0 J/cm²"
    assert format_dose(0.0) == "0 J/cm²"


def test_the_widget_shows_the_numbers_it_is_given(qtbot):
    widget = TelemetryWidget()
    qtbot.addWidget(widget)
    assert widget.text("frames_per_s") == "–"
    widget.set_telemetry(
        Telemetry(
            frames_per_s=95.2,
            volumes_per_s=1.02,
            latency_p50_ms=985.0,
            latency_p99_ms=1120.0,
            frames=41,
            volumes=41,
            skipped_frames=379,
            queue_depth=2,
            dose_per_frame_J_cm2=2e-3,
            cumulative_dose_J_cm2=0.84,
            equivalent_zstack_dose_J_cm2=0.84 * 9,
            zstack_planes=9,
            redraws_per_s=29.5,
        )
    )
    shown = {
        key: widget.text(key)
        for key in (
            "frames_per_s",
            "volumes_per_s",
            "latency_p50_ms",
            "latency_p99_ms",
            "frames",
            "skipped_frames",
            "queue_depth",
            "dose_per_frame_J_cm2",
            "cumulative_dose_J_cm2",
            "equivalent_zstack_dose_J_cm2",
            "zstack_dose_per_volume_J_cm2",
            "zstack_label",
            "redraws_per_s",
        )
    }
    assert shown == {
        "frames_per_s": "95.2 /s",
        "volumes_per_s": "1.02 /s",
        "latency_p50_ms": "985 ms",
        "latency_p99_ms": "1.12 s",
        "frames": "41",
        "skipped_frames": "379",
        "queue_depth": "2",
        "dose_per_frame_J_cm2": "2.00 mJ/cm²",
        "cumulative_dose_J_cm2": "840 mJ/cm²",
        "equivalent_zstack_dose_J_cm2": "7.56 J/cm²",
        "zstack_dose_per_volume_J_cm2": "18.0 mJ/cm²",
        "zstack_label": "as 9-plane z-stacks",
        "redraws_per_s": "29.5 /s",
    }
    assert widget.text("dose_saving") == (
        "Scanning the same 9 planes as a z-stack would take 9× the light per volume."
    )


def test_stats_are_read_under_their_usual_names():
    stats = {
        "fps": 50.0,
        "volumes_per_s": 2.0,
        "p50_ms": 400.0,
        "latency_p99_ms": 900.0,
        "frames_acquired": 100,
        "volumes": 40,
        "skipped": 60,
        "dose_per_frame_J_cm2": 1e-3,
        "dose_total_J_cm2": 0.1,
    }
    telemetry = Telemetry.from_stats(stats, planes_per_volume=21)
    assert telemetry.frames_per_s == 50.0
    assert telemetry.latency_p50_ms == 400.0
    assert telemetry.frames == 100
    assert telemetry.skipped_frames == 60
    assert telemetry.cumulative_dose_J_cm2 == 0.1
    # not in the stats: a 21-plane scanned stack instead of each of the 100 frames
    assert telemetry.equivalent_zstack_dose_J_cm2 == pytest.approx(1e-3 * 21 * 100)


def test_stats_objects_and_given_zstack_dose():
    @dataclass
    class Stats:
        frames_per_s: float
        frames: int
        dose_total_J_cm2: float
        equivalent_zstack_dose_J_cm2: float

    stats = Stats(9.0, 3, 3e-3, 0.063)  # compared with 21-plane stacks
    telemetry = Telemetry.from_stats(stats)
    assert telemetry.frames_per_s == 9.0
    assert telemetry.equivalent_zstack_dose_J_cm2 == 0.063  # the session's own figure
    assert telemetry.zstack_planes == 21
    assert telemetry.latency_p50_ms is None


def test_the_zstack_has_the_planes_of_the_volumes_shown(qtbot):
    """The z-stack compared with has the volumes' planes: the factor is their count.

    (The panel once showed a 21-plane comparison next to 9-plane volumes.)
    """
    stats = {
        "frames_acquired": 40,
        "dose_per_frame_J_cm2": 2e-3,
        "dose_total_J_cm2": 0.08,
        "equivalent_zstack_dose_J_cm2": 0.08 * 21,  # another stack: not these volumes
    }
    telemetry = Telemetry.from_stats(stats, planes_per_volume=9)
    assert telemetry.zstack_planes == 9
    assert telemetry.equivalent_zstack_dose_J_cm2 / 0.08 == pytest.approx(9)
    per_volume = telemetry.zstack_dose_per_volume_J_cm2
    assert per_volume / telemetry.dose_per_frame_J_cm2 == pytest.approx(9)
    widget = TelemetryWidget()
    qtbot.addWidget(widget)
    widget.set_telemetry(telemetry)
    assert widget.text("zstack_dose_per_volume_J_cm2") == "18.0 mJ/cm²"  # 9 × 2.00
    assert widget.text("equivalent_zstack_dose_J_cm2") == "720 mJ/cm²"  # 9 × 80.0
    assert widget.text("zstack_label") == "as 9-plane z-stacks"
    assert "9×" in widget.text("dose_saving")
