from __future__ import annotations

import gc
from typing import TYPE_CHECKING

import pytest

from deepz_live.acquisition import SIMULATOR_CONFIG, DeepzCore
from deepz_live.acquisition.simulator import Bench, bench_for

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def sim_core() -> Iterator[DeepzCore]:
    """The simulator on a fast (simulated) clock; torn down deterministically."""
    core = DeepzCore()
    core.loadSystemConfiguration(str(SIMULATOR_CONFIG))
    core.setProperty("Camera", "Clock", "simulated")
    yield core
    core.unloadAllDevices()
    del core
    gc.collect()


@pytest.fixture
def bench(sim_core: DeepzCore) -> Bench:
    b = bench_for(sim_core)
    assert b is not None
    return b
