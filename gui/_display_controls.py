"""The bar under `VolumeView`: plane slider (µm), contrast, colormap, method, z stretch.

The widgets show the view's state and take the user's changes: `VolumeView` connects
their signals to its setters and shows its state in them through the ``show_*``
methods, which never emit, so that a setter called from code and a widget changed by
hand end in the same state without echoing back and forth.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import QSignalBlocker, Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QWidget,
)
from superqt import QLabeledDoubleSlider

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["DisplayControls"]


class DisplayControls(QWidget):
    """The plane slider and the display settings of a `VolumeView`, in one row.

    Parameters
    ----------
    colormaps : sequence of str
        Colormap names offered (others are added when shown).
    render_methods : mapping of str to str
        3-D rendering methods offered, with descriptions (their tooltips).
    z_scales : sequence of float
        z display stretches offered after ``auto``.
    contrast_tip : str
        Tooltip of the auto contrast box.
    """

    def __init__(
        self,
        colormaps: Sequence[str],
        render_methods: Mapping[str, str],
        z_scales: Sequence[float],
        contrast_tip: str,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        bar = QHBoxLayout(self)
        bar.setContentsMargins(0, 0, 0, 0)  # a row of the view's layout, not a box
        bar.addWidget(QLabel("Plane"))
        self.plane_slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.plane_slider.setRange(0.0, 0.0)
        self.plane_slider.setDecimals(2)
        self.plane_slider.setToolTip("Refocus plane shown in XY, in µm from the focus")
        bar.addWidget(self.plane_slider, 2)
        bar.addWidget(QLabel("µm"))

        self.auto_contrast_box = QCheckBox("Auto")
        self.auto_contrast_box.setChecked(True)
        self.auto_contrast_box.setToolTip(contrast_tip)
        bar.addWidget(QLabel("Contrast"))
        bar.addWidget(self.auto_contrast_box)
        self.clim_min_box = QDoubleSpinBox()
        self.clim_max_box = QDoubleSpinBox()
        for box in (self.clim_min_box, self.clim_max_box):
            box.setRange(-1e9, 1e9)
            box.setDecimals(1)
            box.setKeyboardTracking(False)
            bar.addWidget(box)
        self.colormap_box = QComboBox()
        self.colormap_box.addItems(list(colormaps))
        bar.addWidget(self.colormap_box)
        self.method_box = QComboBox()
        for method, description in render_methods.items():
            self.method_box.addItem(method, method)
            index = self.method_box.count() - 1
            self.method_box.setItemData(index, description, Qt.ItemDataRole.ToolTipRole)
        bar.addWidget(self.method_box)
        bar.addWidget(QLabel("z ×"))
        self.z_scale_box = QComboBox()
        self.z_scale_box.addItems(["auto", *(f"{f:g}" for f in z_scales)])
        self.z_scale_box.setToolTip(
            "Stretch z for display (1 = physical proportions; the XZ and YZ axes "
            "stay in µm)"
        )
        bar.addWidget(self.z_scale_box)

    def show_planes(self, planes_um: np.ndarray, plane_um: float) -> None:
        """Let the slider span ``planes_um`` (µm, increasing), at ``plane_um``."""
        with QSignalBlocker(self.plane_slider):
            self.plane_slider.setRange(float(planes_um[0]), float(planes_um[-1]))
            step = float(np.min(np.diff(planes_um))) if planes_um.size > 1 else 1.0
            # superqt's double slider takes float steps; its stubs say int
            self.plane_slider.setSingleStep(step)  # type: ignore[arg-type]
            self.plane_slider.setPageStep(step)  # type: ignore[arg-type]
        self.show_plane(plane_um)

    def show_plane(self, plane_um: float) -> None:
        """Put the slider's handle on ``plane_um``."""
        with QSignalBlocker(self.plane_slider):
            self.plane_slider.setValue(plane_um)

    def show_auto_contrast(self, auto: bool) -> None:
        with QSignalBlocker(self.auto_contrast_box):
            self.auto_contrast_box.setChecked(auto)

    def show_clim(self, clim: tuple[float, float]) -> None:
        for box, value in zip(
            (self.clim_min_box, self.clim_max_box), clim, strict=True
        ):
            with QSignalBlocker(box):
                box.setValue(value)

    def show_colormap(self, name: str) -> None:
        """Select colormap ``name``, added to the choices if it is not one of them."""
        _show_choice(self.colormap_box, name)

    def show_render_method(self, method: str) -> None:
        _show_choice(self.method_box, method)

    def show_z_scale(self, factor: float | None) -> None:
        """Select z stretch ``factor`` (None: ``auto``), added if not offered."""
        _show_choice(self.z_scale_box, "auto" if factor is None else f"{factor:g}")


def _show_choice(box: QComboBox, text: str) -> None:
    if box.currentText() != text:
        with QSignalBlocker(box):
            if box.findText(text) < 0:
                box.addItem(text)
            box.setCurrentText(text)
