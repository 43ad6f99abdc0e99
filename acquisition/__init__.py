"""Micro-Manager acquisition through pymmcore-plus, and the simulated microscope.

Open a microscope from any Micro-Manager configuration (the simulator by default),
record time-lapses and z-stacks to OME-TIFF. The simulator itself lives in
`acquisition.simulator`. This layer never imports torch, Qt, ``inference`` or ``gui``.
"""

from ._core import DeepzCore
from ._engine import DeepzEngine
from ._errors import (
    AcquisitionError,
    AcquisitionInterrupted,
    ConfigError,
    DeepzError,
    OutputLocationError,
)
from ._runs import TimelapseSummary, ZStackSummary, acquire_timelapse, acquire_zstack
from ._scope import SPECIMEN_DEVICE, Microscope, open_microscope
from ._writers import (
    OmeTiffWriter,
    OmeZarrWriter,
    open_writer,
    read_frame_metadata,
    read_run_metadata,
)

__all__ = [
    "SPECIMEN_DEVICE",
    "AcquisitionError",
    "AcquisitionInterrupted",
    "ConfigError",
    "DeepzCore",
    "DeepzEngine",
    "DeepzError",
    "Microscope",
    "OmeTiffWriter",
    "OmeZarrWriter",
    "OutputLocationError",
    "TimelapseSummary",
    "ZStackSummary",
    "acquire_timelapse",
    "acquire_zstack",
    "open_microscope",
    "open_writer",
    "read_frame_metadata",
    "read_run_metadata",
]
