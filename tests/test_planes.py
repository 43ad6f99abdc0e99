"""One plane specification: the CLI text, the panel's fields and the API agree."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deepz._cli_live import LiveUsageError, planes_from_option
from deepz_live.acquisition import (
    MAX_PLANES,
    PlaneError,
    check_planes,
    default_planes,
    parse_planes,
    planes_from_range,
)
from deepz_live.gui import LiveSettings, SettingsError
from deepz_live.gui import planes_from_range as panel_planes_from_range

coordinate = st.floats(-50, 50, allow_nan=False).map(lambda v: round(v, 2))
step = st.floats(0.05, 10, allow_nan=False).map(lambda v: round(v, 2))


@given(start=coordinate, span=st.floats(0, 40), step=step)
def test_a_range_holds_every_step_from_start_to_stop(start, span, step) -> None:
    stop = start + span
    count = math.floor(span / step + 1e-9) + 1
    if count > MAX_PLANES:
        with pytest.raises(PlaneError, match=f"at most {MAX_PLANES}"):
            planes_from_range(start, stop, step)
        return
    planes = planes_from_range(start, stop, step)
    assert len(planes) == count
    assert planes[0] == pytest.approx(start)
    assert planes[-1] <= stop + 1e-6 and planes[-1] + step > stop - 1e-6
    assert all(b > a for a, b in itertools.pairwise(planes))
    # the text form gives the same planes
    assert parse_planes(f"{start!r}:{stop!r}:{step!r}") == planes


def test_stop_is_included_despite_float_steps() -> None:
    assert planes_from_range(-0.3, 0.3, 0.1) == (-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3)
    assert parse_planes("-8:8:2") == (-8, -6, -4, -2, 0, 2, 4, 6, 8)
    assert parse_planes("-4, 0, 2.5") == (-4.0, 0.0, 2.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-8:8:0", "step must be more than 0"),
        ("8:-8:2", "below the first"),
        ("-10:10:0.05", "at most 201"),
        ("4,0,-4", "must increase"),
        ("0,0", "must increase"),
        ("a,b", "expected START:STOP:STEP"),
        ("", "expected START:STOP:STEP"),
        ("nan,1", "finite"),
    ],
)
def test_every_front_door_refuses_the_same_planes_alike(text, message) -> None:
    with pytest.raises(PlaneError, match=message):
        parse_planes(text)
    with pytest.raises(LiveUsageError, match=f"--planes .*{message}"):
        planes_from_option(text)


def test_the_panel_uses_the_same_rules() -> None:
    with pytest.raises(SettingsError, match="Refocus planes: the step must be more"):
        panel_planes_from_range(-8, 8, 0)
    fields = {"config": "x.cfg", "out": "x.ome.tif"}
    for planes in [(4.0, 0.0), tuple(float(k) for k in range(MAX_PLANES + 1))]:
        with pytest.raises(ValueError, match=r"increase|more than 201"):
            LiveSettings(**fields, planes_um=planes)
    assert LiveSettings(**fields, planes_um=(-2.0, 0.0)).planes_um == (-2.0, 0.0)


def test_planes_beyond_the_model_range_are_refused_with_the_fix() -> None:
    assert check_planes([-10.0, 10.0 + 1e-9], 10.0) == (-10.0, 10.0 + 1e-9)
    with pytest.raises(
        PlaneError, match=r"12 µm is outside the trained range of m, ±10"
    ):
        check_planes([0.0, 12.0], 10.0, model="m")


def test_default_planes_cover_80_percent_of_the_range() -> None:
    assert default_planes(10.0) == (-8.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0)
    assert default_planes(5.0, step_um=1.0) == (
        -4.0,
        -3.0,
        -2.0,
        -1.0,
        0.0,
        1.0,
        2.0,
        3.0,
        4.0,
    )
