"""The run controls: configuration, exposure, light, timing, planes, model, saving.

`ControlsWidget.settings` turns the fields into a frozen `LiveSettings` or raises a
`SettingsError` whose message the panel shows as it is; Start and Snap emit the
settings, Stop asks the run to stop.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from deepz_live.gui._settings import (
    BACKENDS,
    INFERENCE_POLICIES,
    LiveSettings,
    SettingsError,
    check_planes_in_model_range,
    planes_from_range,
)
from deepz_live.inference import LIVE_MODEL_NAME

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ControlsWidget", "model_range_um", "next_free_path"]

DEFAULT_OUTPUT = Path("runs") / "live.ome.tif"

_NUMBERED = re.compile(r"^(?P<stem>.*?)(?:-(?P<n>\d{3,}))?$")


def model_range_um(model: str) -> float:
    """The ±refocusing range (µm) a model was trained for, read from its file.

    Raises
    ------
    SettingsError
        If the model cannot be found or read (the message says why).
    """
    from deepz_live.inference import ModelFileError, read_model_info

    try:
        return float(read_model_info(model).dz_range_um)
    except ModelFileError as error:
        raise SettingsError(f"Model: {error}") from error


def next_free_path(path: Path) -> Path:
    """``path``, or the first ``name-001.ome.tif``, ``name-002...`` that does not exist.

    Multi-part suffixes (``.ome.tif``, ``.ome.zarr``) are kept together.
    """
    if not path.exists():
        return path
    name = path.name
    suffix = (
        "".join(path.suffixes[-2:])
        if name.lower().endswith((".ome.tif", ".ome.tiff", ".ome.zarr"))
        else path.suffix
    )
    stem = name[: len(name) - len(suffix)] if suffix else name
    match = _NUMBERED.match(stem)
    assert match is not None  # the pattern matches any string
    base = match.group("stem")
    number = int(match.group("n") or 0)
    while True:
        number += 1
        candidate = path.with_name(f"{base}-{number:03d}{suffix}")
        if not candidate.exists():
            return candidate


def _readable(error: ValidationError) -> str:
    """A pydantic error as one or two sentences (no types, no URLs)."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _spin(
    low: float, high: float, value: float, *, decimals: int = 1, suffix: str = ""
) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setDecimals(decimals)
    box.setValue(value)
    box.setSuffix(suffix)
    box.setKeyboardTracking(False)
    return box


class _PathField(QWidget):
    """A line edit with a browse button."""

    def __init__(self, text: str, caption: str, filter_: str, *, save: bool) -> None:
        super().__init__()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.edit = QLineEdit(text)
        self.edit.setClearButtonEnabled(True)
        button = QToolButton()
        button.setText("…")
        button.setToolTip(caption)
        layout.addWidget(self.edit, 1)
        layout.addWidget(button)
        self._caption, self._filter, self._save = caption, filter_, save
        button.clicked.connect(self._browse)

    def _browse(self) -> None:
        dialog = (
            QFileDialog.getSaveFileName if self._save else QFileDialog.getOpenFileName
        )
        path, _ = dialog(self, self._caption, self.edit.text(), self._filter)
        if path:
            self.edit.setText(path)


class ControlsWidget(QWidget):
    """Fields for one live run and the Start / Stop / Snap buttons.

    Parameters
    ----------
    config : path, optional
        Initial configuration file (default: the simulator's).
    model : str
        Initial model (bundled name or file).
    model_range : callable, optional
        ``model -> ±range in µm``; raises `SettingsError` for a missing model.
        Default: read from the model file (`model_range_um`).
    parent : QWidget, optional
        Qt parent.
    """

    start_requested = Signal(object)
    """Start pressed with valid settings: emits the `LiveSettings`."""
    snap_requested = Signal(object)
    """Snap pressed with valid settings: emits the `LiveSettings`."""
    stop_requested = Signal()
    """Stop pressed."""
    invalid = Signal(str)
    """Start or Snap pressed with settings that cannot run: emits the message."""

    def __init__(
        self,
        *,
        config: str | Path | None = None,
        model: str = LIVE_MODEL_NAME,
        model_range: Callable[[str], float] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        if config is None:
            from deepz_live.acquisition import SIMULATOR_CONFIG

            config = SIMULATOR_CONFIG
        self._model_range = model_range or model_range_um
        self._running = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)

        # -- microscope ----------------------------------------------------------------
        scope = QGroupBox("Acquisition")
        form = QFormLayout(scope)
        self.config_field = _PathField(
            str(config),
            "Micro-Manager configuration",
            "Config (*.cfg);;All (*)",
            save=False,
        )
        form.addRow("Config", self.config_field)
        self.exposure_box = _spin(0.1, 60_000, 10.0, suffix=" ms")
        form.addRow("Exposure", self.exposure_box)
        self.led_box = _spin(0.0, 100.0, 20.0, suffix=" %")
        self.led_box.setToolTip("Light source intensity (property LED,Intensity)")
        form.addRow("LED intensity", self.led_box)
        self.interval_box = _spin(0.0, 3_600_000, 0.0, suffix=" ms")
        self.interval_box.setToolTip(
            "Time between frame starts; 0 = as fast as possible"
        )
        form.addRow("Interval", self.interval_box)
        frames_row = QHBoxLayout()
        self.frames_box = QSpinBox()
        self.frames_box.setRange(1, 10_000_000)
        self.frames_box.setValue(100)
        self.continuous_box = QCheckBox("continuous")
        self.continuous_box.toggled.connect(
            lambda on: self.frames_box.setEnabled(not on)
        )
        frames_row.addWidget(self.frames_box, 1)
        frames_row.addWidget(self.continuous_box)
        form.addRow("Frames", frames_row)
        layout.addWidget(scope)

        # -- refocusing ----------------------------------------------------------------
        deepz = QGroupBox("Refocusing")
        form = QFormLayout(deepz)
        planes_row = QHBoxLayout()
        self.plane_from_box = _spin(-1000, 1000, -8.0, decimals=2)
        self.plane_to_box = _spin(-1000, 1000, 8.0, decimals=2)
        self.plane_step_box = _spin(0.0, 100, 2.0, decimals=2)
        for label, box in (
            ("from", self.plane_from_box),
            ("to", self.plane_to_box),
            ("step", self.plane_step_box),
        ):
            planes_row.addWidget(QLabel(label))
            planes_row.addWidget(box, 1)
            box.valueChanged.connect(self._update_plane_count)
        form.addRow("Planes (µm)", planes_row)
        self.plane_count_label = QLabel()
        form.addRow("", self.plane_count_label)
        self.model_field = _PathField(
            model, "Deep-Z model", "Models (*.safetensors);;All (*)", save=False
        )
        self.model_field.edit.setToolTip("A bundled model name ('default') or a file")
        form.addRow("Model", self.model_field)
        self.backend_box = QComboBox()
        self.backend_box.addItems(BACKENDS)
        form.addRow("Backend", self.backend_box)
        self.policy_box = QComboBox()
        for policy, description in INFERENCE_POLICIES.items():
            self.policy_box.addItem(policy)
            self.policy_box.setItemData(self.policy_box.count() - 1, description, 3)
        self.policy_box.setToolTip(
            "\n".join(f"{k}: {v}" for k, v in INFERENCE_POLICIES.items())
        )
        form.addRow("Policy", self.policy_box)
        layout.addWidget(deepz)

        # -- saving --------------------------------------------------------------------
        saving = QGroupBox("Saving")
        form = QFormLayout(saving)
        self.output_field = _PathField(
            str(DEFAULT_OUTPUT),
            "Raw frames file",
            "OME-TIFF (*.ome.tif);;OME-Zarr (*.ome.zarr)",
            save=True,
        )
        self.output_field.edit.setToolTip(
            "Raw frames are always saved (.ome.tif or .ome.zarr); an existing file is "
            "never overwritten: the run gets the next free name (name-001...)"
        )
        form.addRow("Raw frames", self.output_field)
        self.save_volumes_box = QCheckBox("also save volumes")
        form.addRow("", self.save_volumes_box)
        layout.addWidget(saving)

        # -- buttons -------------------------------------------------------------------
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.snap_button = QPushButton("Snap")
        self.start_button.setToolTip("Acquire and refocus frames, saving them")
        self.snap_button.setToolTip("One frame, refocused; nothing is saved")
        for button in (self.start_button, self.stop_button, self.snap_button):
            buttons.addWidget(button)
        self.start_button.clicked.connect(lambda: self._request(self.start_requested))
        self.snap_button.clicked.connect(lambda: self._request(self.snap_requested))
        self.stop_button.clicked.connect(self.stop_requested.emit)
        layout.addLayout(buttons)
        layout.addStretch(1)
        self._update_plane_count()
        self.set_running(False)

    # -- settings ----------------------------------------------------------------------
    def planes_um(self) -> tuple[float, ...]:
        """The refocus planes of the from/to/step fields (raises `SettingsError`)."""
        return planes_from_range(
            self.plane_from_box.value(),
            self.plane_to_box.value(),
            self.plane_step_box.value(),
        )

    def settings(self) -> LiveSettings:
        """The run the fields describe.

        Raises
        ------
        SettingsError
            With a message for the user: an empty or missing configuration file, a
            missing model, refocus planes outside the model's range, an empty output.
        """
        config_text = self.config_field.edit.text().strip()
        if not config_text:
            raise SettingsError(
                "Config: choose a Micro-Manager configuration file (.cfg)."
            )
        config = Path(config_text).expanduser()
        if not config.is_file():
            raise SettingsError(f"Config: no configuration file at {config}.")
        output_text = self.output_field.edit.text().strip()
        if not output_text:
            raise SettingsError("Saving: choose a file for the raw frames.")
        planes = self.planes_um()
        model = self.model_field.edit.text().strip()
        if not model:
            raise SettingsError(
                "Model: choose a model ('default' or a .safetensors file)."
            )
        check_planes_in_model_range(planes, self._model_range(model))
        try:
            # the combo boxes' texts are checked by the model (backend, policy)
            return LiveSettings.model_validate(
                {
                    "config": config,
                    "exposure_ms": self.exposure_box.value(),
                    "led_intensity": self.led_box.value(),
                    "interval_ms": self.interval_box.value(),
                    "frames": None
                    if self.continuous_box.isChecked()
                    else self.frames_box.value(),
                    "planes_um": planes,
                    "model": model,
                    "backend": self.backend_box.currentText(),
                    "policy": self.policy_box.currentText(),
                    "out": next_free_path(Path(output_text).expanduser()),
                    "save_volumes": self.save_volumes_box.isChecked(),
                }
            )
        except ValidationError as error:
            raise SettingsError(_readable(error)) from error

    def set_settings(self, settings: LiveSettings) -> None:
        """Fill the fields from ``settings``."""
        self.config_field.edit.setText(str(settings.config))
        self.exposure_box.setValue(settings.exposure_ms)
        self.led_box.setValue(settings.led_intensity)
        self.interval_box.setValue(settings.interval_ms)
        self.continuous_box.setChecked(settings.frames is None)
        if settings.frames is not None:
            self.frames_box.setValue(settings.frames)
        planes = settings.planes_um
        self.plane_from_box.setValue(planes[0])
        self.plane_to_box.setValue(planes[-1])
        self.plane_step_box.setValue(settings.dz_um if len(planes) > 1 else 1.0)
        self.model_field.edit.setText(settings.model)
        self.backend_box.setCurrentText(settings.backend)
        self.policy_box.setCurrentText(settings.policy)
        self.output_field.edit.setText(str(settings.out))
        self.save_volumes_box.setChecked(settings.save_volumes)

    # -- state -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether the controls show a run in progress."""
        return self._running

    def set_running(self, running: bool) -> None:
        """Lock the run's fields and enable Stop while running (and the reverse)."""
        self._running = running
        self.start_button.setEnabled(not running)
        self.snap_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        for group in self.findChildren(QGroupBox):
            group.setEnabled(not running)

    def _request(self, signal: Signal) -> None:
        try:
            settings = self.settings()
        except SettingsError as error:
            self.invalid.emit(str(error))
            return
        signal.emit(settings)

    def _update_plane_count(self) -> None:
        try:
            planes = self.planes_um()
        except SettingsError as error:
            self.plane_count_label.setText(str(error).removeprefix("Refocus planes: "))
            return
        self.plane_count_label.setText(
            f"{len(planes)} plane{'s' if len(planes) != 1 else ''}: "
            f"{planes[0]:+g} … {planes[-1]:+g} µm"
        )
