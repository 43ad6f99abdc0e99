"""`RunPlan`: one checked, frozen description of a live run, saved as plain JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from pydantic import ValidationError

from deepz_live.acquisition import RunPlan

if TYPE_CHECKING:
    from pathlib import Path


def test_a_plan_round_trips_through_its_metadata(tmp_path: Path) -> None:
    plan = RunPlan(
        out=tmp_path / "worm.ome.tif",
        model=tmp_path / "mine.safetensors",  # a path is kept as text
        planes_um="-4:4:2",
        policy="all",
        save_volumes=tmp_path / "v.ome.zarr",
        led_intensity=5,
    )
    assert plan.planes_um == (-4.0, -2.0, 0.0, 2.0, 4.0)
    assert plan.model == str(tmp_path / "mine.safetensors")
    text = json.dumps(plan.to_metadata())  # plain JSON types only
    assert RunPlan.model_validate(json.loads(text)) == plan


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"gain": 2}, "Extra inputs are not permitted"),
        ({"frames": 0}, "greater than 0"),
        ({"exposure_ms": -1}, "greater than 0"),
        ({"led_intensity": 120}, "less than or equal to 100"),
        ({"planes_um": "4,0"}, "planes must increase"),
        ({"planes_um": (0.0, float("nan"))}, "finite"),
        ({"policy": "some"}, "'latest' or 'all'"),
        ({"model": "  "}, "choose a model"),
        ({"out": ""}, "choose where to save"),
    ],
)
def test_a_plan_refuses_what_cannot_run(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RunPlan(**{"out": "x.ome.tif", **fields})


def test_a_plan_is_frozen() -> None:
    plan = RunPlan(out="x.ome.tif")
    with pytest.raises(ValidationError, match="frozen"):
        plan.frames = 3  # type: ignore[misc]
    assert plan.model is None and plan.planes_um is None  # the caller's defaults
