"""deepz-live: live Deep-Z refocusing for widefield fluorescence microscopy.

The public facade. Open a (real or simulated) microscope and record data::

    import deepz

    with deepz.open_microscope() as scope:  # the simulator by default
        scope.focus_on_specimen()
        summary = deepz.acquire_timelapse(
            scope, frames=30, interval_ms=0, exposure_ms=10, out="movie.ome.tif"
        )

The same runs are available from the command line: ``deepz acquire``, ``deepz zstack``.
"""

from importlib.metadata import PackageNotFoundError, version

from acquisition import (
    AcquisitionError,
    AcquisitionInterrupted,
    ConfigError,
    DeepzError,
    Microscope,
    OutputLocationError,
    TimelapseSummary,
    ZStackSummary,
    acquire_timelapse,
    acquire_zstack,
    open_microscope,
    read_frame_metadata,
    read_run_metadata,
)
from hardware_configs import SIMULATOR_CONFIG

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
    "Microscope",
    "OutputLocationError",
    "TimelapseSummary",
    "ZStackSummary",
    "__version__",
    "acquire_timelapse",
    "acquire_zstack",
    "open_microscope",
    "read_frame_metadata",
    "read_run_metadata",
]
