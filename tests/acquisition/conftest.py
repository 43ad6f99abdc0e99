"""Fixtures of the acquisition tests."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from deepz_live.acquisition import Microscope


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
