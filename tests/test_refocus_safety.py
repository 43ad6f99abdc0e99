"""`deepz refocus` / `deepz.refocus_file` with what users actually hand them (issue 13).

Every case ends in one line on stderr (no traceback) with exit code 1 (failed run) or
2 (bad option), or in a correct result; nothing the user had is lost: not the raw
recording, not the model, not an earlier volume file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

import deepz
from deepz._cli import main
from deepz_live.acquisition import read_frame_metadata, read_volume_metadata
from deepz_live.inference import InferenceError, ModelFileError

if TYPE_CHECKING:
    from pathlib import Path

torch = pytest.importorskip("torch")

FAST = ["--set", "Camera,Binning,4", "--set", "Camera,Clock,simulated"]


def _run(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _one_error_line(capsys: pytest.CaptureFixture[str], code: int, got: int) -> str:
    """The single stderr line of a refused command (and nothing on stdout)."""
    captured = capsys.readouterr()
    assert got == code, captured.err
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("deepz: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-frame time-lapse from `deepz acquire` on the binned simulator (1.3 µm)."""
    raw = tmp_path_factory.mktemp("recorded") / "worm.ome.tif"
    assert _run(["acquire", "--frames", "3", *FAST, "--out", str(raw)]) == 0
    return raw


@pytest.fixture
def raw(recorded: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "worm.ome.tif"
    copy.write_bytes(recorded.read_bytes())
    return copy


# -- data loss -----------------------------------------------------------------------
@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_out_that_is_the_raw_file_under_another_name_is_refused(
    tiny_model: Path, raw: Path, capsys, link: str
) -> None:
    original = raw.read_bytes()
    alias = raw.with_name("alias.ome.tif")
    if link == "hard":
        os.link(raw, alias)
    else:
        alias.symlink_to(raw.name)
    base = ["refocus", str(tiny_model), "--planes", "0", "--overwrite", "--out"]
    for args in ([*base, str(alias), str(raw)], [*base, str(raw), str(alias)]):
        line = _one_error_line(capsys, 1, _run(args))
        assert "is the raw file" in line and "another --out" in line
        assert raw.read_bytes() == original
        assert alias.exists()
    with pytest.raises(deepz.OutputLocationError, match="is the raw file"):
        deepz.refocus_file(tiny_model, raw, out=alias, overwrite=True)
    assert raw.read_bytes() == original


def test_out_that_is_the_model_file_is_refused(
    tiny_model: Path, raw: Path, tmp_path: Path, capsys
) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(tiny_model.read_bytes())
    args = ["refocus", str(model), str(raw), "--planes", "0", "--overwrite"]
    line = _one_error_line(capsys, 1, _run([*args, "--out", str(model)]))
    assert "is the model file" in line
    assert model.read_bytes() == tiny_model.read_bytes()


def test_a_failing_first_frame_leaves_an_existing_volume_file_alone(
    tiny_model: Path, tmp_path: Path, capsys
) -> None:
    raw = tmp_path / "scaled.tif"  # float frames scaled 0..1: refused
    scaled = np.random.default_rng(0).random((2, 32, 32), np.float32)
    tifffile.imwrite(raw, scaled, photometric="minisblack")
    out = tmp_path / "earlier.volumes.ome.tif"
    out.write_bytes(b"an earlier result")
    args = ["refocus", str(tiny_model), str(raw), "--planes", "0", "--out", str(out)]
    args += ["--overwrite", "--pixel-size-um", "1.3"]
    line = _one_error_line(capsys, 1, _run(args))
    assert "not in camera counts" in line and "Nothing was written" in line
    assert out.read_bytes() == b"an earlier result"


# -- a killed run's file -------------------------------------------------------------
@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The file of a `deepz acquire` killed with SIGKILL (never closed)."""
    raw = tmp_path_factory.mktemp("killed") / "killed.ome.tif"
    command = [sys.executable, "-m", "deepz", "acquire", "--frames", "2000"]
    command += ["--interval-ms", "20", *FAST, "--out", str(raw)]
    child = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if raw.exists() and raw.stat().st_size > 4 * 128 * 128 * 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the acquisition never wrote its first frames")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert len(read_frame_metadata(raw)) >= 3
    return raw


def test_a_killed_runs_file_is_checked_against_the_model(
    tiny_model: Path, killed: Path, tmp_path: Path, capsys
) -> None:
    """The run metadata a killed run leaves (page 0) gives the pixel size to check."""
    from deepz_live.inference import load_model, save_model

    generator, info = load_model(tiny_model)
    info.pixel_size_um = 0.325  # a model made for unbinned pixels (4x finer)
    other = tmp_path / "other.safetensors"
    save_model(other, generator, info)
    out = tmp_path / "v.ome.tif"
    args = [str(killed), "--planes", "0", "--out", str(out)]
    line = _one_error_line(capsys, 1, _run(["refocus", str(other), *args]))
    assert "pixel size is 1.3 µm but model 'tiny' was trained at 0.325 µm" in line
    assert not out.exists()
    assert _run(["refocus", str(tiny_model), *args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["volumes"] == len(read_frame_metadata(killed))
    assert (summary["pixel_size_um"], summary["pixel_size_source"]) == (
        1.3,
        "raw file",
    )


def test_a_file_without_a_pixel_size_needs_it_stated(
    tiny_model: Path, killed: Path, tmp_path: Path, capsys
) -> None:
    """Frames with no pixel size on record (another program's TIFF, or a killed
    run's file from before run metadata survived a kill)."""
    bare = tmp_path / "bare.tif"
    frames = tifffile.imread(killed)
    tifffile.imwrite(bare, frames, photometric="minisblack")
    out = tmp_path / "v.ome.tif"
    args = ["refocus", str(tiny_model), str(bare), "--planes", "0"]
    args += ["--out", str(out)]

    # unknown pixel size: refused before any frame, naming both ways out
    line = _one_error_line(capsys, 1, _run(args))
    assert "pixel size is unknown" in line and "1.3 µm" in line
    assert "--pixel-size-um" in line and "--allow-model-mismatch" in line
    assert not out.exists()
    with pytest.raises(ModelFileError, match="pixel size is unknown"):
        deepz.refocus_file(tiny_model, bare, planes_um=[0.0], out=out)
    assert not out.exists()

    # stated: checked against the model like a recorded one
    line = _one_error_line(capsys, 1, _run([*args, "--pixel-size-um", "0.65"]))
    assert "0.65 µm" in line and "1.3 µm" in line
    assert _run([*args, "--pixel-size-um", "1.3", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["volumes"] == len(frames)
    assert summary["pixel_size_um"] == 1.3
    assert summary["pixel_size_source"].startswith("stated")
    run = read_volume_metadata(out)["run"]
    assert run["pixel_size_um"] == 1.3 and run["pixel_size_source"].startswith("stated")

    # allowed: refocused, with one warning line, and the assumption on record
    assert _run([*args, "--allow-model-mismatch", "--overwrite"]) == 0
    captured = capsys.readouterr()
    warning = captured.err.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("deepz: warning:")
    assert "as if it were 1.3 µm" in warning[0]
    run = read_volume_metadata(out)["run"]
    assert run["pixel_size_um"] is None
    assert run["pixel_size_source"].startswith("unknown; refocused as if")
    assert "pixel size is unknown" in run["processor"]["model_mismatch"][0]

    # the API: the same rule
    api = deepz.refocus_file(
        tiny_model,
        bare,
        planes_um=[0.0],
        out=tmp_path / "api.ome.tif",
        pixel_size_um=1.3,
    )
    assert (api.volumes, api.pixel_size_um) == (len(frames), 1.3)


def test_an_imagej_calibration_is_a_recorded_pixel_size(
    tiny_model: Path, recorded: Path, tmp_path: Path
) -> None:
    frames = tifffile.imread(recorded)
    for size, fits in ((1.3, True), (0.65, False)):
        path = tmp_path / f"imagej-{size}.tif"
        tifffile.imwrite(
            path,
            frames,
            imagej=True,
            resolution=(1 / size, 1 / size),
            metadata={"unit": "micron", "axes": "TYX"},
        )
        if fits:
            summary = deepz.refocus_file(tiny_model, path, planes_um=[0.0])
            assert summary.pixel_size_um == pytest.approx(1.3)
            assert summary.pixel_size_source == "raw file"
        else:
            with pytest.raises(ModelFileError, match=r"pixel size is 0\.65 µm"):
                deepz.refocus_file(tiny_model, path, planes_um=[0.0])


def test_a_stated_pixel_size_replaces_the_recorded_one_on_record(
    tiny_model: Path, raw: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "v.ome.tif"
    args = ["refocus", str(tiny_model), str(raw), "--planes", "0", "--out", str(out)]
    assert _run([*args, "--pixel-size-um", "1.25"]) == 0
    err = capsys.readouterr().err
    assert "deepz: warning: the stated pixel size 1.25 µm replaces the 1.3 µm" in err
    run = read_volume_metadata(out)["run"]
    assert (run["pixel_size_um"], run["raw_pixel_size_um"]) == (1.25, 1.3)
    for bad in ("0", "-1", "nan", "inf"):
        line = _one_error_line(capsys, 2, _run([*args, "--pixel-size-um", bad]))
        assert "--pixel-size-um" in line and "positive" in line
    with pytest.raises(ValueError, match="positive"):
        deepz.refocus_file(tiny_model, raw, out=out, overwrite=True, pixel_size_um=-1)


# -- files that are not a time-lapse -------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("empty", "is empty (0 bytes)"),
        ("header only", "holds no complete frame"),
        ("text", "cannot be read as a TIFF time-lapse"),
        ("folder", "is a folder"),
        ("the model", "is a model file, not a time-lapse"),
    ],
)
def test_files_that_are_not_a_time_lapse(
    tiny_model: Path, recorded: Path, tmp_path: Path, capsys, kind: str, message: str
) -> None:
    path = tmp_path / "bad.ome.tif"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "header only":  # cut inside the first frame
        path.write_bytes(recorded.read_bytes()[:5000])
    elif kind == "text":
        path.write_text("frame 1\n")
    elif kind == "folder":
        path.mkdir()
    else:  # MODEL and RAW swapped
        path = tiny_model
    out = tmp_path / "v.ome.tif"
    args = ["refocus", str(tiny_model), str(path), "--planes", "0", "--out", str(out)]
    line = _one_error_line(capsys, 1, _run(args))
    assert message in line
    assert not out.exists()
    with pytest.raises(deepz.OutputLocationError, match=re.escape(message)):
        deepz.refocus_file(tiny_model, path, out=out)


def test_a_volume_file_is_not_taken_for_raw_frames(
    tiny_model: Path, raw: Path, tmp_path: Path, capsys
) -> None:
    for planes, message in ([-2.0, 2.0], "has a z axis"), ([0.0], "holds refocused"):
        volumes = deepz.refocus_file(
            tiny_model, raw, planes_um=planes, overwrite=True
        ).output
        args = ["refocus", str(tiny_model), str(volumes)]
        args += ["--out", str(tmp_path / "x.tif")]
        line = _one_error_line(capsys, 1, _run(args))
        assert message in line and "give the raw time-lapse" in line


def test_a_truncated_recording_refocuses_its_complete_frames(
    tiny_model: Path, killed: Path, tmp_path: Path
) -> None:
    data = killed.read_bytes()
    cut = tmp_path / "cut.ome.tif"
    cut.write_bytes(data[: len(data) * 2 // 3])  # the last pages are gone
    summary = deepz.refocus_file(tiny_model, cut, planes_um=[0.0], pixel_size_um=1.3)
    assert 2 <= summary.volumes < len(read_frame_metadata(killed))
    expected = tifffile.imread(killed)[: summary.volumes]
    np.testing.assert_array_equal(
        tifffile.imread(cut, key=range(summary.volumes)), expected
    )


# -- pixels and models that cannot be refocused with ---------------------------------
def test_a_nan_pixel_in_a_later_frame_stops_with_the_volumes_so_far_saved(
    tiny_model: Path, tmp_path: Path, capsys
) -> None:
    rng = np.random.default_rng(1)
    # float copies of camera counts, with one bad pixel in frame 2
    frames = (100 + rng.gamma(2.0, 300.0, (4, 32, 32))).round().astype(np.float32)
    frames[2, 5, 7] = np.nan
    raw = tmp_path / "float.tif"
    tifffile.imwrite(raw, frames, photometric="minisblack")
    out = tmp_path / "v.ome.tif"
    args = ["refocus", str(tiny_model), str(raw), "--planes", "-2,2", "--out", str(out)]
    args += ["--pixel-size-um", "1.3", "--backend", "torch"]
    line = _one_error_line(capsys, 1, _run(args))
    assert "1 NaN or infinite pixel(s) of 1024" in line
    assert "stopped at frame 2 of 4" in line and "2 volumes made before it" in line
    saved = tifffile.imread(out)
    assert saved.shape == (2, 2, 32, 32) and np.isfinite(saved).all()
    # float counts refocus exactly like the integers they came from
    from deepz_live.inference import Refocuser

    as_integers = Refocuser(tiny_model, backend="torch").refocus(
        frames[1].astype(np.uint16), [-2.0, 2.0]
    )
    np.testing.assert_allclose(saved[1], as_integers, rtol=1e-5, atol=1e-2)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.safetensors", "no model file at"),
        (lambda d: d, "is not a file"),
        ("truncated", "not a readable safetensors file"),
        ("nan", "weights are NaN or infinite"),
    ],
)
def test_model_files_that_cannot_be_used(
    tiny_model: Path, raw: Path, tmp_path: Path, capsys, make, message: str
) -> None:
    if make == "truncated":
        model = tmp_path / "cut.safetensors"
        model.write_bytes(tiny_model.read_bytes()[:2000])
    elif make == "nan":
        from deepz_live.inference import load_model, save_model

        generator, info = load_model(tiny_model)
        with torch.no_grad():
            next(generator.parameters())[0] = float("inf")
        model = tmp_path / "nan.safetensors"
        save_model(model, generator, info)
    else:
        model = make(tmp_path)
    args = ["refocus", str(model), str(raw), "--planes", "0"]
    assert message in _one_error_line(capsys, 1, _run(args))
    with pytest.raises(InferenceError, match=message):
        deepz.refocus_file(model, raw)
    assert not deepz.default_volume_path(raw).exists()
