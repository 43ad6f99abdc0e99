"""From a simulated z-stack with ground truth to depth scores, through the CLI."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from deepz._cli import main

if TYPE_CHECKING:
    from pathlib import Path


def _run(args: list[str], capsys) -> tuple[str, str]:
    try:
        main(args)
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_zstack_train_evaluate_with_ground_truth(tmp_path: Path, capsys) -> None:
    pytest.importorskip("torch")
    stack = tmp_path / "worm.ome.tif"
    sim = ["--set", "Camera,Clock,simulated", "--set", "Camera,Binning,4"]
    out, _ = _run(
        ["zstack", "--range-um", "6", "--step-um", "0.5", "--ground-truth",
         "--out", str(stack), "--json", *sim],
        capsys,
    )  # fmt: skip
    summary = json.loads(out)
    clean = tmp_path / "worm.clean.ome.tif"
    assert summary["clean_output"] == str(clean) and clean.exists()
    assert (tmp_path / "worm.objects.csv").exists()

    # a glob hands over the twin too: it is read with its stack, not as a second one
    model = tmp_path / "m.safetensors"
    _, err = _run(
        ["train", str(stack), str(clean), "--out", str(model), "--epochs", "1",
         "--steps-per-epoch", "2", "--base-width", "4", "--architecture", "stack",
         "--stack-step-um", "0.5", "--device", "cpu"],
        capsys,
    )  # fmt: skip
    assert "Training on 1 stack(s)" in err
    assert "against held-out noise-free planes" in err

    out, _ = _run(
        ["evaluate", str(model), str(stack), "--json", "--crop", "0",
         "--device", "cpu", "--bin-um", "0.5"],
        capsys,
    )  # fmt: skip
    result = json.loads(out)
    assert result["clean_targets"] is True
    assert result["bin_um"] == 0.5
    assert all(b["dz_um"] % 0.5 == 0 for b in result["bins"])
    assert any(b["psnr_model_clean"] is not None for b in result["bins"])
    for key in ("axial_error_median_um", "axial_within_1um_fraction",
                "axial_baseline_median_um"):  # fmt: skip
        assert key in result


def test_evaluate_plot_path_is_checked_before_the_work(tmp_path: Path, capsys) -> None:
    for plot, message in (
        (tmp_path / "missing" / "eval.png", "does not exist"),
        (tmp_path / "eval.xyz", "unknown image format"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(
                ["evaluate", "default", str(tmp_path / "none.tif"), "--plot", str(plot)]
            )
        assert exc.value.code
        assert message in capsys.readouterr().err
