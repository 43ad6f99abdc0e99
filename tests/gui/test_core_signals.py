"""Inside a Qt application the core still delivers frames without a Qt event loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def test_core_and_mda_use_psygnal_signals_inside_a_qt_app(qapp) -> None:
    """pymmcore-plus would pick Qt signals here (a QApplication exists), whose
    frameReady waits for the GUI thread's event loop; the live pipeline needs every
    frame on the acquisition thread at once, which psygnal gives."""
    from pymmcore_plus.core.events import CMMCoreSignaler
    from useq import MDASequence

    from deepz_live.acquisition import open_microscope

    assert qapp is not None
    with open_microscope() as scope:
        core = scope.core
        assert isinstance(core.events, CMMCoreSignaler)
        shapes: list[tuple[int, ...]] = []

        def on_frame(frame: np.ndarray, *_: object) -> None:
            shapes.append(frame.shape)

        core.mda.events.frameReady.connect(on_frame)
        core.setROI(0, 0, 64, 64)
        core.mda.run(MDASequence(time_plan={"interval": 0, "loops": 3}))
    # delivered during the run, no Qt event processed in between
    assert shapes == [(64, 64)] * 3
