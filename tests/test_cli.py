"""The deepz command line: JSON on stdout, one-line errors, exit codes, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tifffile

from deepz._cli import cli_command, main

REPO = Path(__file__).parents[1]
FAST = ["--set", "Camera,Binning,4", "--set", "Camera,Clock,simulated"]


def _run(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_acquire_json_is_the_only_stdout(tmp_path: Path, capsys) -> None:
    out = tmp_path / "movie.ome.tif"
    args = ["acquire", "--frames", "4", "--exposure-ms", "5", "--led-intensity", "40"]
    code = _run([*args, "--out", str(out), "--json", *FAST])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)  # exactly one JSON document
    assert set(summary) == {
        "frames",
        "fps",
        "output",
        "dose_per_frame_J_cm2",
        "dose_total_J_cm2",
        "equivalent_zstack_dose_J_cm2",
    }
    assert summary["frames"] == 4
    assert summary["output"] == str(out)
    assert summary["dose_per_frame_J_cm2"] == pytest.approx(0.4 * 0.005)
    assert summary["equivalent_zstack_dose_J_cm2"] == pytest.approx(21 * 4 * 0.002)
    assert tifffile.imread(out).shape == (4, 128, 128)


def test_acquire_focuses_on_the_specimen_by_default(tmp_path: Path, capsys) -> None:
    out = tmp_path / "movie.ome.tif"
    assert _run(["acquire", "--frames", "1", "--out", str(out), "--json", *FAST]) == 0
    from deepz_live.acquisition import read_frame_metadata, read_run_metadata

    focus_z = float(read_run_metadata(out)["devices"]["Specimen"]["FocusZ"])
    assert read_frame_metadata(out)[0]["z_um"] == pytest.approx(focus_z)

    out2 = tmp_path / "movie2.ome.tif"
    args = ["acquire", "--frames", "1", "--out", str(out2), "--z", "33.5", *FAST]
    assert _run(args) == 0
    assert read_frame_metadata(out2)[0]["z_um"] == pytest.approx(33.5)
    assert "Saved 1 frames" in capsys.readouterr().out


def test_zstack_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "stack.ome.tif"
    args = ["zstack", "--range-um", "2", "--step-um", "1", "--exposure-ms", "2"]
    code = _run([*args, "--out", str(out), "--json", *FAST])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert summary == {
        "output": str(out),
        "shape": [3, 128, 128],
        "voxel_um": pytest.approx([1.0, 1.3, 1.3]),
    }
    assert tifffile.imread(out).shape == (3, 128, 128)


def test_zstack_to_ome_zarr(tmp_path: Path, capsys) -> None:
    zarr = pytest.importorskip("zarr")
    out = tmp_path / "stack.ome.zarr"
    args = ["zstack", "--range-um", "2", "--step-um", "1", "--exposure-ms", "2"]
    code = _run([*args, "--out", str(out), "--json", *FAST])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["shape"] == [3, 128, 128]
    group = zarr.open_group(str(out), mode="r")
    assert group["0"].shape == (3, 128, 128)
    scale = group.attrs["ome"]["multiscales"][0]["datasets"][0][
        "coordinateTransformations"
    ][0]["scale"]
    assert scale == pytest.approx([1.0, 1.3, 1.3])
    frames = group.attrs["deepz-live"]["frames"]
    assert [round(f["z_um"] - frames[0]["z_um"], 6) for f in frames] == [0, 1, 2]


def test_human_summary_mentions_dose(tmp_path: Path, capsys) -> None:
    out = tmp_path / "movie.ome.tif"
    assert _run(["acquire", "--frames", "2", "--out", str(out), *FAST]) == 0
    text = capsys.readouterr().out
    assert f"Saved 2 frames to {out}" in text
    assert "21-plane z-stacks" in text


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--set", "Camera,Bogus,1"], 2, "has no property 'Bogus'"),
        (["--set", "Laser,Power,1"], 2, "No device 'Laser'"),
        (["--set", "Camera,Clock,fast"], 2, "choose one of"),
        (["--set", "Camera"], 2, "DEVICE,PROPERTY,VALUE"),
        (["--frames", "many"], 2, "Invalid value for '--frames'"),
        (["--frames", "0"], 1, "frames must be at least 1"),
        (["--exposure-ms", "0"], 1, "exposure must be more than 0"),
        (["--config", "missing.cfg"], 1, "does not exist"),
        (["--z", "9000"], 1, "outside the travel"),
    ],
)
def test_errors_are_one_line_with_exit_code(
    tmp_path: Path, capsys, args: list[str], code: int, message: str
) -> None:
    out = tmp_path / "x.ome.tif"
    assert _run(["acquire", "--out", str(out), *args]) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("deepz: error: ")
    assert message in lines[0]
    assert "Traceback" not in captured.err
    assert not out.exists()


def test_existing_output_needs_overwrite(tmp_path: Path, capsys) -> None:
    out = tmp_path / "x.ome.tif"
    out.write_bytes(b"keep me")
    assert _run(["acquire", "--frames", "1", "--out", str(out), *FAST]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    args = ["acquire", "--frames", "1", "--out", str(out), "--overwrite", *FAST]
    assert _run(args) == 0
    assert tifffile.imread(out).shape == (128, 128)


def test_default_output_goes_to_runs_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _run(["acquire", "--frames", "1", "--json", *FAST]) == 0
    output = Path(json.loads(capsys.readouterr().out)["output"])
    assert output.parent == tmp_path.resolve() / "runs"
    assert output.name.endswith("-timelapse.ome.tif")
    assert output.is_file()


@pytest.mark.slow
def test_ctrl_c_saves_frames_and_exits_130(tmp_path: Path) -> None:
    """A real SIGINT to `python -m deepz`: the frames so far stay readable."""
    out = tmp_path / "long.ome.tif"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYMM_LOG_FILE": "0"}
    args = ["acquire", "--frames", "2000", "--exposure-ms", "20", "--json"]
    args += ["--out", str(out), "--set", "Camera,Binning,4"]
    process = subprocess.Popen(
        [sys.executable, "-m", "deepz", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    # the file appears with the first frame; wait for a few more
    while time.monotonic() < deadline and (
        not out.exists() or out.stat().st_size < 5 * 128 * 128 * 2
    ):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stdout == ""
    assert "interrupted after" in stderr
    assert str(out) in stderr
    saved = int(stderr.split("interrupted after ")[1].split(" ")[0])
    assert saved >= 5
    assert tifffile.imread(out).shape == (saved, 128, 128)


@pytest.mark.parametrize("argv", [["gui"], ["demo"], ["demo", "--screenshot", "x.png"]])
def test_panel_without_qt_is_the_install_hint(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # a machine without the gui extra: qtpy (hence every Qt binding) cannot import
    for name in [
        m
        for m in sys.modules
        if m.startswith(("deepz_live.gui", "qtpy")) or m == "qtpy"
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "qtpy", None)
    assert _run(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("deepz: error: The deepz panel needs Qt")
    assert 'pip install "deepz-live[gui]"' in captured.err
    assert captured.err.count("\n") == 1  # one line, no traceback


def _commands() -> dict[str, object]:
    return dict(cli_command().commands)


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_option_and_argument_has_help(name: str) -> None:
    command = _commands()[name]
    missing = [p.name for p in command.params if not (getattr(p, "help", "") or "")]
    assert not missing, f"deepz {name}: no help for {missing}"


@pytest.mark.parametrize("name", [None, *sorted(_commands())])
def test_help_shows_flags_without_a_value(
    name: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--help"] if name is None else [name, "--help"]
    main(argv)
    text = capsys.readouterr().out
    assert "--help" in text
    assert "<bool>" not in text  # a flag takes no value


def test_demo_takes_the_acquire_options() -> None:
    options = {
        name: {opt for p in _commands()[name].params for opt in p.opts}
        for name in ("acquire", "demo")
    }
    assert {"--model", "--config", "--overwrite"} <= options["demo"] & options[
        "acquire"
    ]


def test_an_exposure_set_with_set_is_the_one_used(tmp_path: Path, capsys) -> None:
    from deepz_live.acquisition import read_frame_metadata

    # --set Camera,Exposure,... alone: the run takes (and records) that exposure
    out = tmp_path / "set.ome.tif"
    args = ["acquire", "--frames", "2", "--set", "Camera,Exposure,7", "--json"]
    assert _run([*args, "--out", str(out), *FAST]) == 0, capsys.readouterr().err
    frames = read_frame_metadata(out)
    assert [f["exposure_ms"] for f in frames] == [7.0, 7.0]
    # both ways at once, differently: refused before any light
    args = ["acquire", "--set", "Camera,Exposure,7", "--exposure-ms", "5"]
    assert _run([*args, "--out", str(tmp_path / "both.ome.tif")]) == 2
    assert "two exposures" in capsys.readouterr().err
    assert not (tmp_path / "both.ome.tif").exists()
