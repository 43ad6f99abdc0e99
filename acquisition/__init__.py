"""Micro-Manager acquisition through pymmcore-plus, and the simulated microscope.

Open a microscope from any Micro-Manager configuration (the simulator by default),
record time-lapses and z-stacks to OME-TIFF, and run the live pipeline
(`LiveSession`: raw frames to disk, every frame through a `FrameProcessor` into a
volume). The simulator itself lives in `acquisition.simulator`. This layer never
imports torch, Qt, ``inference`` or ``gui``.
"""

from ._core import DeepzCore
from ._engine import DeepzEngine
from ._errors import (
    AcquisitionError,
    AcquisitionInterrupted,
    ConfigError,
    DeepzError,
    LiveRunError,
    OutputLocationError,
)
from ._ground_truth import (
    GroundTruthFiles,
    ground_truth_paths,
    write_zstack_ground_truth,
)
from ._pipeline import (
    FrameProcessor,
    LiveEvents,
    LiveSession,
    LiveStats,
    LiveSummary,
    LiveVolume,
    Policy,
    default_volume_path,
    microscope_optics,
)
from ._runs import TimelapseSummary, ZStackSummary, acquire_timelapse, acquire_zstack
from ._scope import (
    CONFIG_DIR,
    SIMULATOR_CONFIG,
    SPECIMEN_DEVICE,
    Microscope,
    open_microscope,
)
from ._writers import (
    OmeTiffVolumeWriter,
    OmeTiffWriter,
    OmeZarrVolumeWriter,
    OmeZarrWriter,
    open_volume_writer,
    open_writer,
    read_frame_metadata,
    read_run_metadata,
    read_volume_metadata,
)

__all__ = [
    "CONFIG_DIR",
    "SIMULATOR_CONFIG",
    "SPECIMEN_DEVICE",
    "AcquisitionError",
    "AcquisitionInterrupted",
    "ConfigError",
    "DeepzCore",
    "DeepzEngine",
    "DeepzError",
    "FrameProcessor",
    "GroundTruthFiles",
    "LiveEvents",
    "LiveRunError",
    "LiveSession",
    "LiveStats",
    "LiveSummary",
    "LiveVolume",
    "Microscope",
    "OmeTiffVolumeWriter",
    "OmeTiffWriter",
    "OmeZarrVolumeWriter",
    "OmeZarrWriter",
    "OutputLocationError",
    "Policy",
    "TimelapseSummary",
    "ZStackSummary",
    "acquire_timelapse",
    "acquire_zstack",
    "default_volume_path",
    "ground_truth_paths",
    "microscope_optics",
    "open_microscope",
    "open_volume_writer",
    "open_writer",
    "read_frame_metadata",
    "read_run_metadata",
    "read_volume_metadata",
    "write_zstack_ground_truth",
]
