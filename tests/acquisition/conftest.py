"""Fixtures of the acquisition tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from deepz_live.acquisition import Microscope

REPO = Path(__file__).parents[2]
# the project importable in the child; no pymmcore-plus log file (PYTEST_RUNNING)
CHILD_ENV = {**os.environ, "PYTHONPATH": str(REPO), "PYTEST_RUNNING": "1"}


@pytest.fixture
def child_after_frames() -> Callable[..., tuple[subprocess.Popen[str], int]]:
    """``child_after_frames(args, frames=5)``: start ``python *args`` in the checkout
    and read its stdout until it has printed ``frame N`` with N ≥ ``frames``.

    Returns the running child (stdout and stderr piped, text) and the last N seen
    (less than ``frames`` if the child stopped or 120 s passed first). The caller
    signals, kills or waits for it; a child still running at teardown is killed.
    """
    children: list[subprocess.Popen[str]] = []

    def _start(args: list[str], frames: int = 5) -> tuple[subprocess.Popen[str], int]:
        child = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            env=CHILD_ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        children.append(child)
        assert child.stdout is not None
        done, deadline = 0, time.monotonic() + 120
        while done < frames and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            if line.startswith("frame "):
                done = int(line.split()[1])
        return child, done

    yield _start
    for child in children:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.fixture
def hold_camera() -> Callable[..., Any]:
    """``hold_camera(scope, camera=None)``: give ``scope`` a camera the test holds.

    Loads ``camera`` (default: a new ``FakeCamera`` from tests/conftest.py) as the
    scope's camera, under the same label, and returns it, so that a test can make
    it fail (``fail_at``) or count its snaps (``frames_taken``). pymmcore-plus 0.18
    has no public getter for a loaded Python device; loading an instance the caller
    keeps (``UniMMCore.loadPyDevice``) is the public way to hold one.
    """

    def _hold(scope: Microscope, camera: Any = None) -> Any:
        if camera is None:
            camera = sys.modules["deepz_test_fakes"].FakeCamera()
        core = scope.core
        label = core.getCameraDevice()
        core.unloadDevice(label)
        core.loadPyDevice(label, camera)
        core.initializeDevice(label)
        core.setCameraDevice(label)
        return camera

    return _hold
