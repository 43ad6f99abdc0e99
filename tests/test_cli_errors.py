"""Mistakes and Ctrl-C in ``deepz train``, ``evaluate``, ``export`` and ``bench``.

What a user gets: one line on stderr naming the problem and the fix, the exit code
(2 bad usage, 1 failed run, 130 Ctrl-C, 143 SIGTERM), found before the long work
starts (the work is replaced by a function that fails the test if it is reached),
and no file replaced without ``--overwrite``.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tifffile
from scipy import ndimage

import deepz_live.inference as inference
from deepz._cli import main
from deepz_live.inference import (
    GeneratorConfig,
    ModelInfo,
    Trainer,
    build_generator,
    save_model,
)

if TYPE_CHECKING:
    from pathlib import Path

torch = pytest.importorskip("torch")

#: a tiny, fast training run (1 step per epoch, width-4 U-Net) on the CPU
FAST_TRAIN = ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "1",
              "--base-width", "4", "--device", "cpu"]  # fmt: skip


def _write_stack(
    path: Path, data: np.ndarray, pixel_um: float = 0.325, dtype: Any = np.uint16
) -> Path:
    """A calibrated ImageJ z-stack (1 µm planes, 0.325 µm pixels)."""
    tifffile.imwrite(
        path, data.astype(dtype), imagej=True,
        resolution=(1 / pixel_um, 1 / pixel_um),
        metadata={"spacing": 1.0, "unit": "um", "axes": "ZYX"},
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 9 × 48 × 80 blob stack, a dark stack and a tiny model that fits them."""
    folder = tmp_path_factory.mktemp("cli_errors")
    rng = np.random.default_rng(0)
    points = np.zeros((48, 80), np.float32)
    points[rng.integers(4, 44, 25), rng.integers(4, 76, 25)] = 2e3
    z = np.arange(9) - 4.0
    planes = np.stack([ndimage.gaussian_filter(points, 0.8 + 0.6 * abs(v)) for v in z])
    stack = _write_stack(
        folder / "stack.tif", planes + 100 + rng.normal(0, 2, planes.shape)
    )
    dark = _write_stack(folder / "dark.tif", np.full(planes.shape, 100.0))
    config = GeneratorConfig(base_width=4, depth=2, residual=False)
    torch.manual_seed(0)
    info = ModelInfo(
        format_version=1, name="tiny", generator=config.to_dict(),
        normalization={"offset": 100.0, "percentile": 99.5, "min_scale": 1.0},
        pixel_size_um=0.325, wavelength_um=0.525, na=0.75, dz_range_um=4.0,
        dpm_scale_um=4.0,
    )  # fmt: skip
    model = folder / "tiny.safetensors"
    save_model(model, build_generator(config), info)
    return {"stack": stack, "dark": dark, "model": model}


def _exit_code(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _error_line(argv: list[str], capsys: pytest.CaptureFixture[str], code: int) -> str:
    """Run ``deepz ARGV``: the exit code, and stderr ending in one error line."""
    assert _exit_code(argv) == code, capsys.readouterr().err
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    line = captured.err.strip().splitlines()[-1]
    assert line.startswith("deepz: error: ")
    return line


def _never(what: str) -> Any:
    def reached(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{what} started although the command should have failed")

    return reached


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Trainer, "run", _never("training"))


# -- train: options, data and output, all before training ---------------------------
@pytest.mark.parametrize(
    ("args", "code", "phrases"),
    [
        (["--crop", "0"], 2, ["Crop 0", "positive multiple of 16"]),
        (["--crop", "512"], 2, ["larger than the images", "at most 32"]),
        (["--crop", "48"], 2, ["both sides of the validation split", "--crop 32"]),
        (["--val-fraction", "0"], 2, ["between 0 and 1", "--val-fraction 0.25"]),
        (["--val-fraction", "1"], 2, ["between 0 and 1"]),
        (["--val-fraction", "0.5", "--crop", "48"], 2, ["both must hold a 48 px"]),
        (["--dz-range-um", "-1"], 2, ["--dz-range-um must be more than 0"]),
        (["--dz-range-um", "nan"], 2, ["--dz-range-um must be more than 0"]),
        (["--dz-range-um", "50"], 2, ["reaches beyond every stack"]),
        (["--epochs", "0"], 2, ["'--epochs'", "greater than or equal to 1"]),
        (["--steps-per-epoch", "0"], 2, ["'--steps-per-epoch'"]),
        (["--batch-size", "-1"], 2, ["'--batch-size'"]),
        (["--base-width", "0"], 2, ["'--base-width'"]),
        (["--seed", "-1"], 2, ["'--seed'"]),
        (["--seed", str(2**64)], 2, ["'--seed'", "less than or equal to"]),
        (["--epochs", "many"], 2, ["'--epochs'"]),
        (["--lr", "0"], 2, ["--lr must be more than 0"]),
        (["--architecture", "stack", "--stack-step-um", "0"], 2, ["--stack-step-um"]),
        (["--camera-offset", "-5"], 2, ["--camera-offset must be 0 or more"]),
        (["--camera-offset", "1e9"], 2, ["brightest pixel", "no signal"]),
        (["--weights", "float8"], 2, ["--weights 'float8'", "float16"]),
        (["--loss", "l3"], 2, ["--loss 'l3'", "l1, l2"]),
        (["--split-by", "time"], 2, ["--split-by 'time'"]),
        (["--split-by", "stack"], 2, ["needs at least two"]),
        (["--architecture", "gan"], 2, ["--architecture 'gan'"]),
        (["--voxel-um", "0,1,1"], 2, ["--voxel-um", "positive"]),
        (["--voxel-um", "nan,1,1"], 2, ["--voxel-um", "positive"]),
        (["--resume"], 2, ["--resume: no checkpoint at", "leave --resume out"]),
        (["--init", "missing.safetensors"], 2, ["--init: no model file"]),
        (["--device", "bogus"], 1, ["Unknown device 'bogus'", "cpu"]),
        (["--channel", "3"], 1, ["channel 3 is out of range"]),
    ],
)
def test_train_mistakes_end_before_training(
    files, tmp_path: Path, capsys, no_training, args, code, phrases
) -> None:
    out = tmp_path / "m.safetensors"
    argv = ["train", str(files["stack"]), "--out", str(out), *FAST_TRAIN, *args]
    line = _error_line(argv, capsys, code)
    for phrase in phrases:
        assert phrase in line
    assert not out.exists() and not (tmp_path / "m.safetensors.ckpt").exists()


def test_train_data_mistakes(files, tmp_path: Path, capsys, no_training) -> None:
    out = tmp_path / "m.safetensors"
    dark = ["train", str(files["dark"]), "--out", str(out), *FAST_TRAIN]
    line = _error_line(dark, capsys, 1)
    assert "dark.tif: every pixel of every plane is 100 counts" in line
    assert "Record the stack again" in line
    twice = ["train", str(files["stack"]), str(files["stack"]), "--out", str(out)]
    assert "given more than once" in _error_line(twice, capsys, 2)
    missing = ["train", str(tmp_path / "none.tif"), "--out", str(out)]
    assert "no such file" in _error_line(missing, capsys, 1)
    folder = ["train", str(tmp_path), "--out", str(out)]
    assert "is a folder, not a TIFF file" in _error_line(folder, capsys, 1)
    data = tifffile.imread(files["stack"]).astype(np.float32)
    data[2, 5, 5] = np.nan
    nan = _write_stack(tmp_path / "nan.tif", data, dtype=np.float32)
    line = _error_line(["train", str(nan), "--out", str(out)], capsys, 1)
    assert "nan.tif: plane 2 (from 0) holds pixels that are not numbers" in line
    coarse = _write_stack(tmp_path / "coarse.tif", np.nan_to_num(data), 0.65)
    both = ["train", str(files["stack"]), str(coarse), "--out", str(out), *FAST_TRAIN]
    line = _error_line(both, capsys, 1)
    assert "coarse.tif has 0.65 × 0.65 µm pixels but" in line
    assert "resample the stacks or train separate models" in line


def test_train_output_mistakes(files, tmp_path: Path, capsys, no_training) -> None:
    stack = str(files["stack"])
    line = _error_line(["train", stack, "--out", str(tmp_path)], capsys, 1)
    assert f"{tmp_path} is a folder" in line and "model.safetensors" in line
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = _error_line(["train", stack, "--out", str(blocker / "m.safetensors")],
                       capsys, 1)  # fmt: skip
    assert "is a file, not a folder" in line
    line = _error_line(["train", stack, "--out", stack, "--overwrite"], capsys, 1)
    assert "is also an input" in line
    assert tifffile.imread(stack).shape == (9, 48, 80)


def test_train_does_not_replace_a_model_or_checkpoint(
    files, tmp_path: Path, capsys
) -> None:
    stack = str(files["stack"])
    out = tmp_path / "new" / "m.safetensors"  # a missing folder is created
    train = ["train", stack, "--out", str(out), *FAST_TRAIN]
    assert _exit_code(train) == 0, capsys.readouterr().err
    checkpoint = tmp_path / "new" / "m.safetensors.ckpt"
    assert out.is_file() and checkpoint.is_file()
    model_bytes, checkpoint_bytes = out.read_bytes(), checkpoint.read_bytes()

    line = _error_line(train, capsys, 1)
    assert f"{out} already exists" in line and "--overwrite" in line
    out.unlink()  # the model is gone, its run's checkpoint is not
    line = _error_line(train, capsys, 1)
    assert f"{checkpoint} is the checkpoint of an earlier run" in line
    assert "--resume" in line and "--overwrite" in line
    assert checkpoint.read_bytes() == checkpoint_bytes

    # --resume continues OUT.ckpt into OUT, also when OUT exists (no --overwrite)
    assert _exit_code([*train, "--resume"]) == 0, capsys.readouterr().err
    assert "nothing to train, saving the model" in capsys.readouterr().err
    assert _exit_code([*train, "--resume"]) == 0, capsys.readouterr().err
    assert _exit_code([*train, "--overwrite"]) == 0, capsys.readouterr().err
    assert (
        out.read_bytes() != model_bytes or checkpoint.read_bytes() != checkpoint_bytes
    )


# -- Ctrl-C and SIGTERM during training ---------------------------------------------
def _stop_in_epoch(
    monkeypatch: pytest.MonkeyPatch, epoch: int, stop: Any = KeyboardInterrupt
) -> None:
    """Make the first step of ``epoch`` (1-based) raise ``stop`` (or call it)."""
    step = Trainer.step

    def stepping(self: Trainer, *args: Any, **kwargs: Any) -> dict[str, float]:
        if self.epoch + 1 == epoch:
            if isinstance(stop, type):
                raise stop
            stop()
        return step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "step", stepping)


def test_ctrl_c_in_training_names_the_checkpoint_and_resume_goes_on(
    files, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "m.safetensors"
    checkpoint = tmp_path / "m.safetensors.ckpt"
    train = ["train", str(files["stack"]), "--out", str(out), *FAST_TRAIN,
             "--epochs", "2"]  # fmt: skip
    _stop_in_epoch(monkeypatch, 2)
    line = _error_line(train, capsys, 130)
    assert (
        f"stopped by Ctrl-C: the checkpoint of epoch 1 (of 2) is {checkpoint}" in line
    )
    assert "--resume to continue" in line
    assert checkpoint.is_file() and not out.exists()

    monkeypatch.undo()
    assert _exit_code([*train, "--resume"]) == 0, capsys.readouterr().err
    assert "epochs 2..2" in capsys.readouterr().err
    assert out.is_file()


def test_ctrl_c_in_the_first_epoch_keeps_nothing(
    files, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "m.safetensors"
    _stop_in_epoch(monkeypatch, 1)
    train = ["train", str(files["stack"]), "--out", str(out), *FAST_TRAIN]
    line = _error_line(train, capsys, 130)
    assert "before the first epoch finished: no checkpoint was saved" in line
    assert not out.exists() and not (tmp_path / "m.safetensors.ckpt").exists()


@pytest.mark.parametrize(("name", "code"), [("SIGTERM", 143), ("SIGHUP", 129)])
def test_termination_in_training_exits_128_plus_the_signal(
    files, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, name, code
) -> None:
    number = getattr(signal, name, None)
    if number is None:
        pytest.skip(f"no {name} here")
    before = signal.getsignal(number)

    def terminate() -> None:
        # deepz handles the signal while a command runs (the default would kill
        # pytest), as Ctrl-C: the checkpoint of the finished epoch is kept
        assert signal.getsignal(number) not in (signal.SIG_DFL, before)
        os.kill(os.getpid(), number)

    _stop_in_epoch(monkeypatch, 2, terminate)
    out = tmp_path / "m.safetensors"
    train = ["train", str(files["stack"]), "--out", str(out), *FAST_TRAIN,
             "--epochs", "2"]  # fmt: skip
    line = _error_line(train, capsys, code)
    assert f"stopped by {name}: the checkpoint of epoch 1 (of 2)" in line
    assert signal.getsignal(number) == before


# -- evaluate -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "code", "phrases"),
    [
        (["--crop", "8"], 2, ["--crop 8", "at least 11 px", "0 for the full frame"]),
        (["--crop", "-16"], 2, ["'--crop'", "greater than or equal to 0"]),
        (["--inputs-per-stack", "0"], 2, ["'--inputs-per-stack'"]),
        (["--isolation-um", "-1"], 2, ["--isolation-um must be 0 or more"]),
        (["--bin-um", "0"], 2, ["--bin-um must be more than 0"]),
        (["--axial-range-um", "inf"], 2, ["--axial-range-um must be more than 0"]),
        (["--x-range", "10:5"], 2, ["0 ≤ START < STOP"]),
        (["--x-range", "-5:10"], 2, ["0 ≤ START < STOP"]),
        (["--x-range", "a:b"], 2, ["expected START:STOP"]),
        (["--x-range", "0:5"], 2, ["--x-range", "48×5 px", "Give a wider band"]),
        (["--y-range", "40:48"], 2, ["--y-range", "8×80 px"]),
        (["--x-range", "100:200"], 2, ["stack.tif (width 80 px)"]),
        (["--plot", "figure.xyz"], 2, ["unknown image format '.xyz'", ".png"]),
        (["--plot", "missing/figure.png"], 1, ["does not exist", "create it"]),
        (["--device", "bogus"], 1, ["Unknown device 'bogus'"]),
        (["--voxel-um", "1,2"], 2, ["expected three numbers"]),
    ],
)
def test_evaluate_mistakes_end_before_the_work(
    files,
    tmp_path: Path,
    capsys,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    code: int,
    phrases: list[str],
) -> None:
    monkeypatch.setattr(inference, "evaluate_stacks", _never("evaluation"))
    monkeypatch.chdir(tmp_path)
    argv = ["evaluate", str(files["model"]), str(files["stack"]), "--device", "cpu"]
    line = _error_line([*argv, *args], capsys, code)
    for phrase in phrases:
        assert phrase in line


def test_evaluate_plot_is_not_replaced(
    files, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inference, "evaluate_stacks", _never("evaluation"))
    plot = tmp_path / "figure.png"
    plot.write_bytes(b"keep me")
    argv = ["evaluate", str(files["model"]), str(files["stack"]), "--device", "cpu"]
    line = _error_line([*argv, "--plot", str(plot)], capsys, 1)
    assert f"{plot} already exists" in line and "--overwrite" in line
    assert plot.read_bytes() == b"keep me"
    stack_as_plot = [*argv, "--plot", str(files["stack"]), "--overwrite"]
    assert "is also an input" in _error_line(stack_as_plot, capsys, 1)
    dark = ["evaluate", str(files["model"]), str(files["dark"]), "--device", "cpu"]
    assert "no image to learn from or score against" in _error_line(dark, capsys, 1)


def test_ctrl_c_in_evaluate_exits_130(
    files, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(inference, "predict_normalized", interrupted)
    plot = tmp_path / "figure.png"
    argv = ["evaluate", str(files["model"]), str(files["stack"]), "--device", "cpu",
            "--crop", "0", "--plot", str(plot)]  # fmt: skip
    line = _error_line(argv, capsys, 130)
    assert "deepz evaluate stopped by Ctrl-C before any input plane was scored" in line
    assert f"{plot} was not written" in line
    assert not plot.exists()


# -- export and bench -----------------------------------------------------------------
def test_export_does_not_replace_files(
    files, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_export(model: object, out: Path, **kwargs: object) -> Path:
        out.write_bytes(b"onnx")
        return out

    monkeypatch.setattr(inference, "export_onnx", fake_export)
    out = tmp_path / "m.onnx"
    out.write_bytes(b"keep me")
    export = ["export", str(files["model"]), "--out", str(out)]
    line = _error_line(export, capsys, 1)
    assert f"{out} already exists" in line and "--overwrite" in line
    assert out.read_bytes() == b"keep me"
    assert _exit_code([*export, "--overwrite"]) == 0, capsys.readouterr().err
    assert out.read_bytes() == b"onnx"
    # a TensorRT engine's description beside it counts too (checked before TensorRT)
    engine = tmp_path / "m.engine"
    (tmp_path / "m.engine.json").write_text("{}")
    tensorrt = ["export", str(files["model"]), "--format", "tensorrt",
                "--out", str(engine), "--size", "64", "64"]  # fmt: skip
    line = _error_line(tensorrt, capsys, 1)
    assert "m.engine.json already exists" in line


@pytest.mark.parametrize(
    ("args", "code", "phrase"),
    [
        (["--out", "{tmp}"], 1, "is a folder"),
        (["--out", "{model}"], 1, "is also an input"),
        (["--out", "x.onnx", "--format", "tflite"], 2, "--format 'tflite'"),
        (["--out", "x.onnx", "--batch", "0"], 2, "'--batch'"),
        (["--out", "x.engine", "--format", "tensorrt", "--size", "0", "64"], 2,
         "--size 0 64"),
        (["--out", "x.onnx", "--precision", "fp8"], 1, "Unknown precision 'fp8'"),
        (["--out", "x.onnx", "--size", "64"], 2, "'--size'"),
    ],
)  # fmt: skip
def test_export_mistakes(
    files, tmp_path: Path, capsys, args: list[str], code: int, phrase: str
) -> None:
    model = str(files["model"])
    args = [a.format(tmp=tmp_path, model=model) for a in args]
    out = args[args.index("--out") + 1]
    argv = ["export", model, *args]
    if not os.path.isabs(out):
        argv[argv.index(out)] = str(tmp_path / out)
    assert phrase in _error_line(argv, capsys, code)
    assert not (tmp_path / "x.onnx").exists()


def test_ctrl_c_in_export_and_bench_exits_130(
    files, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(inference, "export_onnx", interrupted)
    monkeypatch.setattr(inference, "bench_all", interrupted)
    out = tmp_path / "m.onnx"
    line = _error_line(["export", str(files["model"]), "--out", str(out)], capsys, 130)
    assert f"deepz export stopped by Ctrl-C: nothing was written to {out}" in line
    line = _error_line(["bench", "--model", str(files["model"])], capsys, 130)
    assert "deepz bench stopped by Ctrl-C" in line


@pytest.mark.parametrize(
    ("args", "code", "phrase"),
    [
        (["--size", "0"], 2, "'--size'"),
        (["--size", "-5"], 2, "greater than or equal to 8"),
        (["--planes", "0"], 2, "'--planes'"),
        (["--volumes", "0"], 2, "'--volumes'"),
        (["--model", "missing.safetensors"], 1, "no model file at missing"),
        (["--backend", "bogus"], 1, "Backend 'bogus' is not available"),
        (["--device", "bogus"], 1, "Unknown device 'bogus'"),
        (["--precision", "fp8"], 1, "Unknown precision 'fp8'"),
    ],
)
def test_bench_mistakes_end_before_timing(
    files, capsys, args: list[str], code: int, phrase: str
) -> None:
    # a good first model and backend: the mistake must still stop the run first
    small = {"--size": "16", "--planes": "1", "--volumes": "1"}
    small.update(zip(args[::2], args[1::2], strict=True))
    argv = ["bench", "--model", str(files["model"]), "--backend", "torch"]
    argv += [text for pair in small.items() for text in pair]
    assert phrase in _error_line(argv, capsys, code)


def test_an_acquisition_stopped_by_sigterm_exits_143(
    capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exit code an acquisition reports for a signal is the command's."""
    import deepz._cli as cli
    from deepz_live.acquisition import AcquisitionTerminated

    def stopped(*args: object, **kwargs: object) -> None:
        raise AcquisitionTerminated(
            "Acquisition stopped by SIGTERM after 3 of 10 frames; the 3 frames "
            "acquired are saved in x.ome.tif.",
            signal_number=signal.SIGTERM,
            frames_saved=3,
            output=None,
        )

    monkeypatch.setattr(cli, "acquire_timelapse", stopped)
    argv = ["acquire", "--frames", "10", "--set", "Camera,Clock,simulated"]
    line = _error_line(argv, capsys, 143)
    assert "stopped by SIGTERM after 3 of 10 frames" in line
