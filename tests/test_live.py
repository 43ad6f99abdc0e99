"""Live refocusing from the front door: the Refocuser adapter, `live_refocus`, the CLI
(`deepz acquire --model`, `deepz refocus`, `deepz demo`) and the examples.

Most tests use a tiny random model trained "at" the fast simulator's pixel size
(4×4 binning: 1.3 µm) on the torch backend; a few use the bundled default model on a
small camera region, as users would.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import deepz
from deepz._cli import main
from deepz_live.acquisition import (
    read_frame_metadata,
    read_run_metadata,
    read_volume_metadata,
)
from deepz_live.inference import LIVE_MODEL_NAME

torch = pytest.importorskip("torch")

REPO = Path(__file__).parents[1]
FAST = ["--set", "Camera,Binning,4", "--set", "Camera,Clock,simulated"]
PLANES_9 = [-8.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0]


def _run(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture
def binned_simulator():
    """The simulator at 4×4 binning (128², 1.3 µm pixels), simulated clock, focused."""
    with deepz.open_microscope() as scope:
        scope.core.setProperty("Camera", "Clock", "simulated")
        scope.core.setProperty("Camera", "Binning", "4")
        scope.focus_on_specimen()
        yield scope


# -- planes --------------------------------------------------------------------------
def test_parse_planes() -> None:
    assert list(deepz.parse_planes("-8:8:2")) == PLANES_9
    assert deepz.parse_planes("0:1:0.25") == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert deepz.parse_planes("-1:0.9:1") == (-1.0, 0.0)  # STOP kept only if on step
    assert deepz.parse_planes("-4, 0,2.5") == (-4.0, 0.0, 2.5)
    for bad, message in [
        ("8:-8:2", r"last plane \(-8 µm\) is below the first"),
        ("-8:8:0", "step must be more than 0"),
        ("-8:8", "START:STOP:STEP"),
        ("a,b", "START:STOP:STEP"),
    ]:
        with pytest.raises(ValueError, match=message):
            deepz.parse_planes(bad)
    assert list(deepz.default_planes(10.0)) == PLANES_9
    assert deepz.default_planes(5.0) == (-4.0, -2.0, 0.0, 2.0, 4.0)


# -- the adapter ---------------------------------------------------------------------
def test_refocuser_processor_checks_planes_and_microscope(tiny_model: Path) -> None:
    from deepz_live.inference import (
        InferenceError,
        ModelFileError,
        ModelMismatchWarning,
    )

    with pytest.raises(InferenceError, match=r"12 µm (is|are) outside .*±10 µm"):
        deepz.RefocuserProcessor(tiny_model, [-2, 12])
    processor = deepz.RefocuserProcessor(tiny_model, backend="torch")
    assert processor.planes_um == tuple(PLANES_9)
    assert processor.check_microscope(1.3, na=0.75) == []
    with pytest.raises(ModelFileError, match=r"pixel size is 0.325 µm.*1.3 µm.*allow"):
        processor.check_microscope(0.325)
    lenient = deepz.RefocuserProcessor(tiny_model, allow_mismatch=True)
    with pytest.warns(ModelMismatchWarning, match="pixel size"):
        assert len(lenient.check_microscope(0.325)) == 1
    assert lenient.describe()["model_mismatch"]


def test_refocus_file_reads_another_writers_pixel_size(
    tiny_model: Path, tmp_path: Path
) -> None:
    from deepz_live.inference import ModelFileError

    raw = tmp_path / "foreign.ome.tif"  # no deepz-live metadata, OME pixel size only
    frames = np.full((2, 32, 32), 100, np.uint16)
    tifffile.imwrite(raw, frames, metadata={"axes": "TYX", "PhysicalSizeX": 0.65})
    with pytest.raises(ModelFileError, match=r"pixel size is 0.65 µm"):
        deepz.refocus_file(tiny_model, raw, planes_um=[0.0])
    assert not (tmp_path / "foreign.volumes.ome.tif").exists()


def test_pipeline_volumes_equal_the_refocuser_alone(
    binned_simulator, tiny_model: Path, tmp_path: Path
) -> None:
    from deepz_live.inference import Refocuser
    from deepz_live.live import plan_from

    out = tmp_path / "worm.ome.tif"
    plan = deepz.RunPlan(
        out=out, frames=4, model=str(tiny_model), planes_um="-4:4:4", policy="all"
    )
    # keywords replace the plan's fields (checked again)
    with deepz.live_refocus(
        binned_simulator, plan, save_volumes=True, backend="torch"
    ) as session:
        got = dict(session)  # (index, volume) pairs
    summary = session.summary
    # the raw file keeps the plan that was run
    saved = deepz.read_run_metadata(out)["plan"]
    ran = plan_from(plan, save_volumes=True, backend="torch")
    assert saved == ran.to_metadata()
    assert saved["planes_um"] == [-4.0, 0.0, 4.0] and saved["policy"] == "all"
    assert summary is not None
    assert summary.volume_output == tmp_path / "worm.volumes.ome.tif"
    raw = tifffile.imread(out)
    volumes = tifffile.imread(summary.volume_output)
    assert volumes.shape == (4, 3, 128, 128)
    alone = Refocuser(tiny_model, backend="torch")
    for index in range(4):
        expected = alone.refocus(raw[index], [-4, 0, 4])
        np.testing.assert_allclose(got[index], expected, rtol=1e-5, atol=1e-3)
        np.testing.assert_array_equal(volumes[index], got[index])
    stored = read_volume_metadata(summary.volume_output)
    processor = stored["run"]["processor"]
    assert processor["model"] == "tiny"
    assert processor["backend"] == "torch"
    assert len(processor["model_sha256"]) == 64
    assert stored["run"]["planes_um"] == [-4.0, 0.0, 4.0]
    # the dose is compared with scanning the same 3 planes for every frame
    assert summary.zstack_planes == 3
    assert summary.dose_total_J_cm2 is not None
    assert summary.equivalent_zstack_dose_J_cm2 == pytest.approx(
        3 * summary.dose_total_J_cm2
    )
    assert (
        read_run_metadata(out)["processor"]["model_sha256"]
        == (processor["model_sha256"])
    )
    # live and offline volume files name the microscope in standard OME
    import ome_types

    offline = deepz.refocus_file(
        tiny_model, out, planes_um=[-4, 0, 4], out=tmp_path / "o.ome.tif"
    )
    for path in (summary.volume_output, offline.output):
        ome = ome_types.from_tiff(path)
        assert ome.instruments[0].objectives[0].lens_na == pytest.approx(0.75)
        assert ome.images[0].pixels.channels[0].emission_wavelength == 525


def test_model_for_another_pixel_size_is_refused_before_any_frame(
    tmp_path: Path,
) -> None:
    from deepz_live.inference import ModelFileError

    with deepz.open_microscope() as scope:
        binning = 2  # 0.65 µm: the live model is at 0.325 µm
        scope.core.setProperty("Camera", "Binning", str(binning))
        with pytest.raises(
            ModelFileError, match=r"0\.65 µm but model 'default-fast' .* 0\.325 µm"
        ):
            deepz.live_refocus(scope, frames=3, out=tmp_path / "x.ome.tif")
        assert float(scope.core.getProperty("LED", "CumulativeOnTime_ms")) == 0
    assert not (tmp_path / "x.ome.tif").exists()


# -- command line --------------------------------------------------------------------
def test_acquire_with_model_json_and_files(
    tiny_model: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "worm.ome.tif"
    args = ["acquire", "--frames", "6", "--model", str(tiny_model), "--planes"]
    args += ["-8:8:2", "--policy", "all", "--save-volumes", "--backend", "torch"]
    code = _run([*args, "--json", "--out", str(out), *FAST])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert {
        "frames",
        "fps",
        "output",
        "dose_per_frame_J_cm2",
        "dose_total_J_cm2",
        "equivalent_zstack_dose_J_cm2",
        "volumes",
        "skipped",
        "volumes_per_s",
        "latency_p50_ms",
        "latency_p99_ms",
        "raw_output",
        "volume_output",
    } <= set(summary)
    assert (summary["frames"], summary["volumes"], summary["skipped"]) == (6, 6, 0)
    assert summary["raw_output"] == summary["output"] == str(out)
    volume_output = tmp_path / "worm.volumes.ome.tif"
    assert summary["volume_output"] == str(volume_output)
    assert summary["latency_p99_ms"] >= summary["latency_p50_ms"] > 0
    assert summary["dose_per_frame_J_cm2"] > 0
    # the light of scanning the same 9-plane volumes: one exposure per plane
    assert summary["equivalent_zstack_dose_J_cm2"] == pytest.approx(
        9 * summary["dose_total_J_cm2"], rel=1e-3
    )
    assert tifffile.imread(out).shape == (6, 128, 128)
    with tifffile.TiffFile(volume_output) as tif:
        assert tif.series[0].axes == "TZYX"
        assert tif.series[0].shape == (6, 9, 128, 128)
        assert 'PhysicalSizeZ="2.0"' in tif.ome_metadata
    stored = read_volume_metadata(volume_output)
    assert stored["run"]["planes_um"] == PLANES_9
    assert [v["frame_index"] for v in stored["volumes"]] == list(range(6))

    # offline: the same frames through `deepz refocus` give the same volumes
    offline = tmp_path / "offline.ome.tif"
    args = ["refocus", str(tiny_model), str(out), "--planes", "-8:8:2"]
    code = _run([*args, "--out", str(offline), "--backend", "torch", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["volumes"] == 6
    np.testing.assert_allclose(
        tifffile.imread(offline), tifffile.imread(volume_output), atol=1e-3
    )
    times = [f["time_s"] for f in read_frame_metadata(out)]
    assert [v["time_s"] for v in read_volume_metadata(offline)["volumes"]] == times


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--planes", "-8:8:2"], 2, "need --model"),
        (["--model", "default", "--policy", "some"], 2, "choose latest"),
        (["--model", "default", "--planes", "8:-8:2"], 2, "plane (-8 µm) is below"),
        (["--model", "nope"], 1, "no bundled model named 'nope'"),
        (["--model", "default", "--planes", "-12:12:4"], 1, "range of model"),
        (["--model", "default", *FAST], 1, "--allow-model-mismatch"),
    ],
)
def test_acquire_with_model_errors(
    tmp_path: Path, capsys, args: list[str], code: int, message: str
) -> None:
    out = tmp_path / "x.ome.tif"
    assert _run(["acquire", "--frames", "2", "--out", str(out), *args]) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert message in lines[0]
    assert not out.exists()


def test_demo_headless_with_the_default_model(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo.ome.tif"
    args = ["demo", "--headless", "--frames", "3", "--roi", "64", "--interval-ms"]
    args += ["0", "--backend", "torch", "--out", str(out), "--json"]
    code = _run(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert summary["frames"] == 3
    assert 1 <= summary["volumes"] <= 3
    assert summary["volumes"] + summary["skipped"] == 3
    assert summary["planes_um"] == PLANES_9
    assert summary["processor"]["model"] == LIVE_MODEL_NAME
    assert tifffile.imread(out).shape == (3, 64, 64)

    # the same command again: refused with the fix, the first recording untouched
    assert _run(args) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert tifffile.imread(out).shape == (3, 64, 64)
    # with --overwrite and another model it runs again into the same file
    assert _run([*args, "--overwrite", "--model", "default", "--frames", "2"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["processor"]["model"] == "default"
    assert tifffile.imread(out).shape == (2, 64, 64)

    assert _run(["demo", "--json"]) == 2  # the panel prints no JSON
    assert "--json needs --headless" in capsys.readouterr().err


@pytest.mark.parametrize(
    "example", ["live_refocus_callback.py", "live_refocus_iterate.py"]
)
def test_examples_run(
    example: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(sys, "argv", [example, str(tmp_path)])
    runpy.run_path(str(REPO / "examples" / example), run_name="__main__")
    printed = capsys.readouterr().out
    assert "volumes" in printed
    frames = tifffile.imread(tmp_path / "worm.ome.tif")
    assert frames.shape[1:] == (128, 128)
    if example == "live_refocus_callback.py":
        volumes = tifffile.imread(tmp_path / "worm.volumes.ome.tif")
        assert volumes.shape == (frames.shape[0], 9, 128, 128)


def test_an_uncalibrated_microscope_is_refused_unless_allowed(
    fake_scope_cfg: Path, tiny_model: Path, tmp_path: Path
) -> None:
    from deepz_live.inference import ModelFileError

    with deepz.open_microscope(fake_scope_cfg) as scope:  # no pixel-size calibration
        out = tmp_path / "raw.ome.tif"
        fields = {"frames": 2, "out": out, "model": str(tiny_model), "backend": "torch"}
        with pytest.raises(ModelFileError, match="pixel size"):
            deepz.live_refocus(scope, **fields)
        assert not out.exists()  # refused before any file or light
        with deepz.live_refocus(scope, allow_model_mismatch=True, **fields) as session:
            summary = session.wait()
    assert summary.frames == 2
    assert summary.processor["model_mismatch"]  # the assumption is recorded
