"""The Qt panel for live virtual volumes (qtpy; only this package imports Qt).

`DeepzPanel` composes the run controls (`ControlsWidget`, producing a frozen
`LiveSettings`), the live display (`VolumeView`: a rotatable 3-D rendering, XY/XZ/YZ
slices with a plane slider in µm, the raw frame, contrast and colormap) and the
telemetry (`TelemetryWidget`). `LiveController` is the single adapter to a live
session; its module docstring states the threading contract. `run_panel` is what
``deepz gui`` / ``deepz demo`` call; `MicroscopeSessions` opens `deepz.live_refocus`
sessions for it.

Importing this package without Qt raises `QtMissingError` with a one-line hint:
``pip install "deepz-live[gui]"``.
"""

# first: without Qt this raises QtMissingError with the install hint
from deepz_live.gui._qt import INSTALL_HINT, QtMissingError

# isort: split
from deepz_live.gui._app import (
    MicroscopeSessions,
    PanelError,
    display_problem,
    run_panel,
)
from deepz_live.gui._controls import ControlsWidget, model_range_um, next_free_path
from deepz_live.gui._main_window import DeepzPanel, ErrorBanner
from deepz_live.gui._screenshot import grab_with_canvases, save_screenshot
from deepz_live.gui._session import (
    LiveController,
    LiveSessionLike,
    SessionFactory,
    describe_error,
)
from deepz_live.gui._settings import (
    BACKENDS,
    INFERENCE_POLICIES,
    LiveSettings,
    SettingsError,
    check_planes_in_model_range,
    planes_from_range,
)
from deepz_live.gui._telemetry import Telemetry, TelemetryWidget
from deepz_live.gui._throttle import LatestOnlyThrottle
from deepz_live.gui._volume_view import (
    COLORMAPS,
    RENDER_METHODS,
    VolumeView,
    auto_contrast_limits,
)

__all__ = [
    "BACKENDS",
    "COLORMAPS",
    "INFERENCE_POLICIES",
    "INSTALL_HINT",
    "RENDER_METHODS",
    "ControlsWidget",
    "DeepzPanel",
    "ErrorBanner",
    "LatestOnlyThrottle",
    "LiveController",
    "LiveSessionLike",
    "LiveSettings",
    "MicroscopeSessions",
    "PanelError",
    "QtMissingError",
    "SessionFactory",
    "SettingsError",
    "Telemetry",
    "TelemetryWidget",
    "VolumeView",
    "auto_contrast_limits",
    "check_planes_in_model_range",
    "describe_error",
    "display_problem",
    "grab_with_canvases",
    "model_range_um",
    "next_free_path",
    "planes_from_range",
    "run_panel",
    "save_screenshot",
]
