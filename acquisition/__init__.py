"""Micro-Manager acquisition through pymmcore-plus, and the simulated microscope.

Open a microscope from any Micro-Manager configuration (the simulator by default),
record time-lapses and z-stacks to OME-TIFF, and run the live pipeline
(`LiveSession`: raw frames to disk, every frame through a `FrameProcessor` into a
volume). The simulator itself lives in `acquisition.simulator`. This layer never
imports torch, Qt, ``inference`` or ``gui``.
"""

from ._core import DeepzCore
from ._dose import equivalent_zstack_dose
from ._engine import DeepzEngine
from ._errors import (
    AcquisitionError,
    AcquisitionInterrupted,
    ConfigError,
    DeepzError,
    LiveRunError,
    OutputLocationError,
)
from ._frame_processor import FrameProcessor, microscope_optics
from ._frames import OmeTiffWriter, OmeZarrWriter, open_writer
from ._ground_truth import (
    GroundTruthFiles,
    ground_truth_paths,
    write_zstack_ground_truth,
)
from ._live_events import LiveEvents
from ._live_policy import POLICIES, POLICY_DESCRIPTIONS, Policy
from ._live_prepare import default_volume_path
from ._live_session import LiveSession
from ._live_stats import LiveState, LiveStats, LiveSummary
from ._live_worker import LiveVolume
from ._planes import (
    DEFAULT_PLANE_STEP_UM,
    MAX_PLANES,
    PlaneError,
    check_planes,
    default_planes,
    parse_planes,
    planes_from_range,
)
from ._readers import (
    UnreadableFileError,
    read_frame_metadata,
    read_run_metadata,
    read_volume_metadata,
)
from ._run_plan import RunPlan
from ._runs import TimelapseSummary, ZStackSummary, acquire_timelapse, acquire_zstack
from ._scope import (
    CONFIG_DIR,
    SIMULATOR_CONFIG,
    SPECIMEN_DEVICE,
    Microscope,
    open_microscope,
)
from ._signals import AcquisitionTerminated
from ._volumes import (
    INSTRUMENT_METADATA_KEYS,
    OmeTiffVolumeWriter,
    OmeZarrVolumeWriter,
    open_volume_writer,
)

__all__ = [
    "CONFIG_DIR",
    "DEFAULT_PLANE_STEP_UM",
    "INSTRUMENT_METADATA_KEYS",
    "MAX_PLANES",
    "POLICIES",
    "POLICY_DESCRIPTIONS",
    "SIMULATOR_CONFIG",
    "SPECIMEN_DEVICE",
    "AcquisitionError",
    "AcquisitionInterrupted",
    "AcquisitionTerminated",
    "ConfigError",
    "DeepzCore",
    "DeepzEngine",
    "DeepzError",
    "FrameProcessor",
    "GroundTruthFiles",
    "LiveEvents",
    "LiveRunError",
    "LiveSession",
    "LiveState",
    "LiveStats",
    "LiveSummary",
    "LiveVolume",
    "Microscope",
    "OmeTiffVolumeWriter",
    "OmeTiffWriter",
    "OmeZarrVolumeWriter",
    "OmeZarrWriter",
    "OutputLocationError",
    "PlaneError",
    "Policy",
    "RunPlan",
    "TimelapseSummary",
    "UnreadableFileError",
    "ZStackSummary",
    "acquire_timelapse",
    "acquire_zstack",
    "check_planes",
    "default_planes",
    "default_volume_path",
    "equivalent_zstack_dose",
    "ground_truth_paths",
    "microscope_optics",
    "open_microscope",
    "open_volume_writer",
    "open_writer",
    "parse_planes",
    "planes_from_range",
    "read_frame_metadata",
    "read_run_metadata",
    "read_volume_metadata",
    "write_zstack_ground_truth",
]
