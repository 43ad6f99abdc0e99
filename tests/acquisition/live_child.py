"""A live run in a child process, for the crash tests (test_pipeline_crash.py).

``python live_child.py kill OUT_DIR``: a long run that prints ``frame K`` once frame K
is written and ``volume K`` once it is refocused; the test kills it with SIGKILL.
``python live_child.py diskfull OUT_DIR LIMIT``: the same run with a file size limit of
LIMIT bytes (RLIMIT_FSIZE: writes past it fail half-way, as on a full disk); prints
one JSON line with the outcome.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
from pathlib import Path

import numpy as np

from deepz_live.acquisition import LiveRunError, LiveSession, open_microscope


class SleepProcessor:
    planes_um = (-2.0, 0.0, 2.0)

    def setup(self, frame_shape, dtype, metadata) -> None:
        pass

    def process(self, frame: np.ndarray) -> np.ndarray:
        time.sleep(0.02)
        return np.stack([frame.astype(np.float32)] * 3)

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"kind": "sleep"}


def main() -> None:
    mode, out = sys.argv[1], Path(sys.argv[2])
    if mode == "diskfull":
        limit = int(sys.argv[3])
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # failed writes, not a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    with open_microscope() as scope:
        scope.core.setProperty("Camera", "Binning", "4")
        scope.core.setProperty("Camera", "Clock", "real")
        session = LiveSession(
            scope,
            SleepProcessor(),
            frames=2000 if mode == "kill" else 40,
            exposure_ms=10,
            out=out / "raw.ome.tif",
            volumes_out=out / "raw.volumes.ome.tif" if mode == "kill" else None,
            policy="all",
            max_frames_in_memory=4,
        )
        if mode == "kill":
            session.events.frame_acquired.connect(
                lambda index, frame: print(f"frame {index}", flush=True)
            )
            session.events.volume_ready.connect(
                lambda index, volume: print(f"volume {index}", flush=True)
            )
        session.start()
        try:
            summary = session.wait()
            result = {"frames": summary.frames, "volumes": summary.volumes}
        except LiveRunError as error:
            assert error.summary is not None
            result = {
                "error": str(error),
                "frames": error.summary.frames,
                "volumes": error.summary.volumes,
            }
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
    if sys.argv[1] == "diskfull":
        # Everything is written and closed, and the outcome printed. Under the file
        # size limit, interpreter teardown sometimes aborts inside Micro-Manager's
        # C++ core ("FATAL: exception not rethrown", about 1 run in 8 here): leave
        # without it, so the exit status reports the run, not the teardown.
        os._exit(0)
