"""deepz-live: live Deep-Z refocusing for widefield fluorescence microscopy.

The public facade. Open a (real or simulated) microscope and record data::

    import deepz

    with deepz.open_microscope() as scope:  # the simulator by default
        scope.focus_on_specimen()
        summary = deepz.acquire_timelapse(
            scope, frames=30, interval_ms=0, exposure_ms=10, out="movie.ome.tif"
        )

Refocus every frame into a virtual volume while the time-lapse runs::

    with deepz.open_microscope() as scope:
        scope.focus_on_specimen()
        with deepz.live_refocus(
            scope, frames=30, out="worm.ome.tif", planes_um="-8:8:2", policy="all"
        ) as session:
            for index, volume in session:  # (9, Y, X) float32 per frame
                ...

`LiveSession` (``session.events``, ``session.stats()``) is what a GUI builds on.
The same runs are available from the command line: ``deepz acquire [--model M]``,
``deepz zstack``, ``deepz refocus``, ``deepz demo --headless``.
"""

from importlib.metadata import PackageNotFoundError, version

from deepz_live.acquisition import (
    SIMULATOR_CONFIG,
    AcquisitionError,
    AcquisitionInterrupted,
    ConfigError,
    DeepzError,
    FrameProcessor,
    LiveEvents,
    LiveRunError,
    LiveSession,
    LiveStats,
    LiveSummary,
    LiveVolume,
    Microscope,
    OutputLocationError,
    RunPlan,
    TimelapseSummary,
    ZStackSummary,
    acquire_timelapse,
    acquire_zstack,
    default_planes,
    default_volume_path,
    open_microscope,
    parse_planes,
    read_frame_metadata,
    read_run_metadata,
    read_volume_metadata,
)
from deepz_live.live import (
    RefocuserProcessor,
    RefocusFileSummary,
    live_refocus,
    refocus_file,
)

try:
    __version__ = version("deepz-live")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "SIMULATOR_CONFIG",
    "AcquisitionError",
    "AcquisitionInterrupted",
    "ConfigError",
    "DeepzError",
    "FrameProcessor",
    "LiveEvents",
    "LiveRunError",
    "LiveSession",
    "LiveStats",
    "LiveSummary",
    "LiveVolume",
    "Microscope",
    "OutputLocationError",
    "RefocusFileSummary",
    "RefocuserProcessor",
    "RunPlan",
    "TimelapseSummary",
    "ZStackSummary",
    "__version__",
    "acquire_timelapse",
    "acquire_zstack",
    "default_planes",
    "default_volume_path",
    "live_refocus",
    "open_microscope",
    "parse_planes",
    "read_frame_metadata",
    "read_run_metadata",
    "read_volume_metadata",
    "refocus_file",
]
