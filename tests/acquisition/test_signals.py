"""SIGTERM and SIGHUP stop a run as Ctrl-C does: files closed, metadata complete."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from typing import TYPE_CHECKING, Any

import pytest
import tifffile

from deepz_live.acquisition import (
    AcquisitionInterrupted,
    AcquisitionTerminated,
    read_frame_metadata,
    read_run_metadata,
)
from deepz_live.acquisition._signals import SignalInterrupt, StopSignals

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable
    from pathlib import Path


pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="POSIX signals (SIGTERM, SIGHUP)"
)

# A run in a child process: prints "frame K" as frames are written, and at the end
# one JSON line with the error it ended with; exits with the error's exit code.
CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    from deepz_live.acquisition import (
        AcquisitionInterrupted, LiveSession, acquire_timelapse, open_microscope,
    )

    class Copy:
        planes_um = (-1.0, 1.0)
        def setup(self, frame_shape, dtype, metadata): pass
        def process(self, frame): return np.stack([frame.astype(np.float32)] * 2)
        def close(self): pass
        def describe(self): return {"kind": "copy"}

    mode, out = sys.argv[1], Path(sys.argv[2])
    with open_microscope() as scope:
        scope.core.setProperty("Camera", "Binning", "4")
        scope.core.setProperty("Camera", "Clock", "real")
        try:
            if mode == "timelapse":
                acquire_timelapse(
                    scope, frames=5000, interval_ms=0, exposure_ms=10, out=out,
                    progress=lambda done, total: print(f"frame {done}", flush=True),
                )
            else:
                session = LiveSession(
                    scope, Copy(), frames=5000, exposure_ms=10, out=out
                )
                session.events.frame_acquired.connect(
                    lambda index, frame: print(f"frame {index + 1}", flush=True)
                )
                with session:
                    session.start()
                    session.wait()
            code, outcome = 0, {}
        except AcquisitionInterrupted as error:
            code = getattr(error, "exit_code", 130)
            outcome = {
                "type": type(error).__name__,
                "message": str(error),
                "frames_saved": error.frames_saved,
                "signal": getattr(error, "signal_number", None),
            }
    print(json.dumps(outcome), flush=True)
    sys.exit(code)
    """
)


def _signal_mid_run(
    start: Callable[..., tuple[subprocess.Popen[str], int]],
    mode: str,
    out: Path,
    signum: int,
) -> tuple[int, dict[str, Any]]:
    """Run ``mode`` in a child, send ``signum`` after a few frames, return its end."""
    child, done = start(["-c", CHILD, mode, str(out)])
    assert done >= 5, child.stderr.read() if child.stderr else ""
    child.send_signal(signum)
    rest, errors = child.communicate(timeout=60)
    assert rest.strip(), errors
    return child.returncode, json.loads(rest.strip().splitlines()[-1])


def _assert_closed_with_metadata(raw: Path, saved: int) -> dict[str, Any]:
    with tifffile.TiffFile(raw) as tif:
        assert tif.is_ome  # closed: OME-XML in page 0
        data = tif.asarray()
    assert data.shape == (saved, 128, 128)
    assert data.std() > 0
    assert len(read_frame_metadata(raw)) == saved
    run = read_run_metadata(raw)
    assert run["settings"]["frames"] == 5000
    assert run["pixel_size_um"] > 0
    assert "Camera" in run["devices"]
    return run


@pytest.mark.slow
def test_sigterm_stops_a_timelapse_cleanly(tmp_path: Path, child_after_frames) -> None:
    raw = tmp_path / "run.ome.tif"
    code, outcome = _signal_mid_run(
        child_after_frames, "timelapse", raw, signal.SIGTERM
    )
    assert code == 143
    assert outcome["type"] == "AcquisitionTerminated"
    assert outcome["signal"] == signal.SIGTERM
    saved = outcome["frames_saved"]
    assert 5 <= saved < 5000
    assert outcome["message"].startswith(
        f"Acquisition stopped by SIGTERM after {saved} of 5000 frames; "
        f"the {saved} frames acquired are saved in {raw}"
    )
    run = _assert_closed_with_metadata(raw, saved)
    assert "result" not in run  # stopped from outside, as after Ctrl-C


@pytest.mark.slow
def test_sighup_stops_a_live_session_cleanly(
    tmp_path: Path, child_after_frames
) -> None:
    raw = tmp_path / "live.ome.tif"
    code, outcome = _signal_mid_run(child_after_frames, "live", raw, signal.SIGHUP)
    assert code == 129
    assert outcome["type"] == "AcquisitionTerminated"
    saved = outcome["frames_saved"]
    assert outcome["message"].startswith(
        f"Live run stopped by SIGHUP after {saved} of 5000 frames"
    )
    run = _assert_closed_with_metadata(raw, saved)
    assert run["result"]["canceled"] is True  # stop(), as Ctrl-C in wait()


def test_handlers_are_restored_and_only_the_first_signal_raises() -> None:
    calls: list[int] = []

    def previous(number: int, frame: object) -> None:
        calls.append(number)

    before = signal.signal(signal.SIGTERM, previous)
    try:
        guard = StopSignals()
        with pytest.raises(SignalInterrupt) as raised, guard:
            assert signal.getsignal(signal.SIGTERM) == guard._handle
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler raises here
        assert raised.value.signal_number == signal.SIGTERM
        assert guard.received == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is previous

        # a second signal while stopping is ignored; after finish() the old handler
        guard = StopSignals()
        with guard:
            with pytest.raises(SignalInterrupt):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            assert calls == []
            guard.finish()
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            assert calls == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before)


def test_terminated_is_an_interrupt_with_an_exit_code() -> None:
    error = AcquisitionTerminated(
        "stopped", signal_number=signal.SIGTERM, frames_saved=3, output=None
    )
    assert isinstance(error, AcquisitionInterrupted)
    assert (error.exit_code, error.frames_saved) == (143, 3)
