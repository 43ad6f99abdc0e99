"""The wheel installs only import names this project owns, and works from them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
OWNED = {"deepz", "deepz_live"}
PIP = [sys.executable, "-m", "pip"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            *PIP,
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(REPO),
        ],
        check=True,
    )
    (built,) = out.glob("deepz_live-*.whl")
    return built


def test_the_wheel_installs_only_owned_top_level_names(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert top == OWNED
    layers = {n.split("/")[1] for n in names if n.startswith("deepz_live/")}
    assert {"acquisition", "inference", "live", "gui", "hardware_configs"} <= layers
    # the file format both acquisition and inference read
    assert "deepz_live/_metadata_format.py" in names
    # the .cfg files are data, not a package
    assert "deepz_live/hardware_configs/simulator.cfg" in names
    assert "deepz_live/hardware_configs/__init__.py" not in names


def test_the_installed_wheel_finds_its_simulator(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [*PIP, "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
    )
    probe = (
        "import deepz_live.acquisition as a, deepz_live.inference as i; "
        "print(a.__file__); print(i.__file__); "
        "print(a.SIMULATOR_CONFIG.is_file())"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": str(target), "PATH": ""},
        cwd=tmp_path,  # not the checkout, which is on sys.path first with -c
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(Path(path).is_relative_to(target) for path in out[:2]), out
    assert out[2] == "True"
