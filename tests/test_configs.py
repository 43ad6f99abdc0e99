"""Every .cfg shipped in hardware_configs/ is well-formed Micro-Manager syntax.

A light check that loads nothing (C++ adapters are not installed here): each
non-comment line is a known command with the right number of fields, and the roles
deepz-live needs are assigned to devices the file declares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from deepz_live.acquisition import CONFIG_DIR, SIMULATOR_CONFIG

if TYPE_CHECKING:
    from pathlib import Path

# command -> allowed field counts, the command itself included
FIELD_COUNTS: dict[str, set[int]] = {
    "Device": {4},
    "pyDevice": {4},
    "Property": {3, 4},
    "Delay": {3},
    "FocusDirection": {3},
    "Label": {4},
    "ConfigGroup": {2, 5, 6},
    "ConfigPixelSize": {5},
    "PixelSize_um": {3},
    "PixelSizeAffine": {8},
    "PixelSizeAngle_dxdz": {3},
    "PixelSizeAngle_dydz": {3},
    "PixelSizeOptimalZ_Um": {3},
    "Parent": {3},
}
PY_PREFIX = "#py "
CONFIGS = sorted(CONFIG_DIR.glob("*.cfg"))


def _commands(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every command line, Python-device lines included."""
    commands = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if line.startswith(PY_PREFIX):
            line = line[len(PY_PREFIX) :].strip()
        elif line.startswith("#") or not line:
            continue
        commands.append((number, line.split(",")))
    return commands


def check_config_syntax(path: Path) -> list[str]:
    """Problems found in ``path``, as ``"line N: ..."`` strings (empty if none)."""
    problems = []
    devices = {"Core"}
    for number, fields in _commands(path):
        command = fields[0]
        if command not in FIELD_COUNTS:
            problems.append(f"line {number}: unknown command {command!r}")
            continue
        if len(fields) not in FIELD_COUNTS[command]:
            problems.append(
                f"line {number}: {command} takes "
                f"{sorted(n - 1 for n in FIELD_COUNTS[command])} values, "
                f"got {len(fields) - 1}"
            )
            continue
        if any(f != f.strip() or not f for f in fields[:3]):
            problems.append(f"line {number}: empty field or stray spaces: {fields}")
        if command in {"Device", "pyDevice"}:
            devices.add(fields[1])
        elif command in {"Property", "Delay", "FocusDirection", "Label", "Parent"}:
            if fields[1] not in devices:
                problems.append(f"line {number}: device {fields[1]!r} not declared")
        if (
            command == "Property"
            and fields[1] == "Core"
            and fields[2]
            in {
                "Camera",
                "Focus",
                "Shutter",
            }
        ):
            if len(fields) == 4 and fields[3] not in devices:
                problems.append(
                    f"line {number}: core {fields[2]} is {fields[3]!r}, not declared"
                )
    return problems


def _roles(path: Path) -> dict[str, str]:
    return {
        fields[2]: fields[3]
        for _, fields in _commands(path)
        if fields[:2] == ["Property", "Core"] and len(fields) == 4
    }


def test_the_shipped_configs_are_found() -> None:
    names = {p.name for p in CONFIGS}
    assert {"simulator.cfg", "widefield_template.cfg"} <= names
    assert SIMULATOR_CONFIG in CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_syntax(path: Path) -> None:
    assert check_config_syntax(path) == []


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_has_camera_and_focus(path: Path) -> None:
    roles = _roles(path)
    assert roles.get("Camera"), "no 'Property,Core,Camera,<label>' line"
    assert roles.get("Focus"), "no 'Property,Core,Focus,<label>' line"


def test_template_uses_cpp_adapters_with_comments() -> None:
    path = CONFIG_DIR / "widefield_template.cfg"
    commands = _commands(path)
    assert all(fields[0] != "pyDevice" for _, fields in commands)
    libraries = {fields[2] for _, fields in commands if fields[0] == "Device"}
    assert len(libraries) >= 3  # camera, focus drive, light source
    text = path.read_text()
    assert text.count("\n#") > len(commands)  # explained, line by line
    assert "mmcore install" in text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Device,Cam,DemoCamera\n", "Device takes [3] values, got 2"),
        ("Frobnicate,Cam,1\n", "unknown command 'Frobnicate'"),
        ("Property,Cam,Exposure,10\n", "device 'Cam' not declared"),
        ("Device,Cam,Demo,DCam\nProperty,Core,Camera,Camera\n", "not declared"),
        ("#py pyDevice,Cam,mod\n", "pyDevice takes [3] values"),
    ],
)
def test_the_checker_catches_mistakes(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.cfg"
    path.write_text(text)
    problems = check_config_syntax(path)
    assert len(problems) == 1
    assert problem in problems[0]
