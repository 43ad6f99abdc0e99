"""The live volume display: a rotatable 3-D view, orthogonal slices and the raw frame.

Data and drawing are kept apart. `VolumeView` holds the newest volume, frame, plane,
cursor, contrast limits and colormap as plain numpy data (what tests assert on); two
vispy canvases draw them: one for the 3-D view (so rotating it redraws nothing else)
and one for the XY / YZ / XZ slices and the raw frame. Without OpenGL (Qt's
``offscreen`` platform, a remote session without GLX) the canvases are replaced by a
message that says why, and everything else keeps working.

Coordinates are physical: x and y in µm from the pixel size, z in µm from the list of
refocus planes (the mean spacing, for planes that are not evenly spaced). The XZ and YZ
slices carry vispy axes in µm; when z is stretched for display (`VolumeView.z_scale`)
they are drawn taller (wider) through their cameras' aspect, so the axes still read true
µm.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

if TYPE_CHECKING:
    from collections.abc import Sequence

    from vispy.scene import SceneCanvas

__all__ = [
    "COLORMAPS",
    "RENDER_METHODS",
    "Z_SCALES",
    "VolumeView",
    "auto_contrast_limits",
]

_log = logging.getLogger(__name__)

COLORMAPS: tuple[str, ...] = ("gray", "green", "magma", "viridis", "inferno", "hot")
"""Colormap names offered (any `cmap` name works in `VolumeView.set_colormap`)."""

RENDER_METHODS: dict[str, str] = {
    "mip": "maximum-intensity projection",
    "attenuated_mip": "MIP, attenuated with depth",
    "translucent": "volume rendering (translucent)",
    "average": "average-intensity projection",
}
"""3-D rendering methods of vispy's Volume visual offered in the panel."""

_SHORT_METHOD_NAMES = {
    "mip": "MIP",
    "attenuated_mip": "attenuated MIP",
    "translucent": "translucent",
    "average": "average",
}

Z_SCALES: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
"""z display stretches offered (``auto`` picks one, see `VolumeView.z_scale`)."""

AUTO_PERCENTILES = (0.5, 99.8)
"""Auto contrast spans these percentiles of the volume (or frame)."""

_BACKGROUND = "#101014"
_LABEL_COLOR = "#e8e8e8"
_CURSOR_COLOR = (1.0, 0.85, 0.2, 0.55)
_BORDER_COLOR = (0.3, 0.3, 0.35, 1.0)
_AXIS_COLOR = (0.6, 0.6, 0.65, 1.0)
_AXIS_WIDTH = 44  # px beside a pane for a vertical axis: ticks, numbers and title
_AXIS_HEIGHT = 36  # px under a pane for a horizontal axis
_GAP = 2  # px between XY and YZ
_EDGE = 6  # px kept free along the canvas edges (tick labels stick out of the axes)


def auto_contrast_limits(
    data: np.ndarray, percentiles: tuple[float, float] = AUTO_PERCENTILES
) -> tuple[float, float]:
    """Contrast limits spanning ``percentiles`` of ``data`` (subsampled for speed)."""
    sample = np.asarray(data)
    # ~250k values are plenty for two percentiles and cost a few ms at any size
    step = max(1, int(np.ceil((sample.size / 250_000) ** (1 / max(sample.ndim, 1)))))
    if step > 1:
        sample = sample[(slice(None, None, step),) * sample.ndim]
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        return (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(finite, percentiles))
    if hi <= lo:
        hi = lo + 1.0
    return (lo, hi)


def _probe_opengl() -> str | None:
    """None if an OpenGL context can be made here, else why not (one sentence)."""
    import importlib.util

    from qtpy.QtGui import QGuiApplication, QOpenGLContext

    if importlib.util.find_spec("OpenGL") is None:  # vispy's 3-D textures need it
        return (
            "3-D view unavailable: PyOpenGL is not installed "
            '(pip install "deepz-live[gui]").'
        )
    platform = QGuiApplication.platformName()
    if platform in ("offscreen", "minimal"):
        return (
            f"3-D view unavailable: Qt's '{platform}' platform has no OpenGL "
            "(run on a desktop, or under Xvfb: xvfb-run -a deepz gui)."
        )
    if not QOpenGLContext().create():
        return (
            f"3-D view unavailable: no OpenGL context on Qt platform '{platform}' "
            "(install an OpenGL driver, e.g. Mesa: apt-get install libgl1-mesa-dri)."
        )
    return None


def _vispy_colormap(name: str) -> Any:
    import cmap

    return cmap.Colormap(name).to_vispy()


def _axis_ticks(
    lo: float, hi: float, length_px: float, spacing_px: float = 30.0
) -> tuple[np.ndarray, np.ndarray]:
    """(major, minor) tick values in [lo, hi] for an axis ``length_px`` long.

    Majors are 1, 2 or 5 × 10ⁿ apart, at least ``spacing_px`` apart on screen (vispy's
    own choice often labels a short axis, as a z of ±9 µm, with a single tick).
    """
    lo, hi = min(lo, hi), max(lo, hi)
    if not hi > lo or not length_px > 0:
        return np.array([lo]), np.zeros(0)
    shortest = (hi - lo) * spacing_px / length_px
    decade = 10.0 ** np.floor(np.log10(shortest))
    factor = next(f for f in (1, 2, 5, 10) if f * decade >= shortest)
    step = factor * decade

    def multiples(of: float) -> np.ndarray:
        first, last = np.ceil(lo / of - 1e-9), np.floor(hi / of + 1e-9)
        return np.arange(first, last + 1) * of + 0.0  # + 0.0: no "-0" label

    minor = multiples(step / (4 if factor == 2 else 5))
    major = multiples(step)
    return major, minor[~np.isclose(minor[:, None], major[None, :]).any(axis=1)]


class _Scenes:
    """The vispy side: the 3-D view, the orthogonal slices and the raw frame.

    Three canvases, so that rotating the 3-D view or a new raw frame (up to 30 per
    second) redraws only its own canvas.
    """

    def __init__(self, method: str, colormap: str) -> None:
        import qtpy
        from vispy import app, scene
        from vispy.geometry import Rect
        from vispy.visuals import axis as vispy_axis
        from vispy.visuals.transforms import STTransform

        self._Rect = Rect
        self._STTransform = STTransform
        vispy_app = app.use_app(qtpy.API_NAME.lower())
        cmap = _vispy_colormap(colormap)

        def canvas() -> Any:
            return scene.SceneCanvas(
                app=vispy_app,
                keys=None,
                bgcolor=_BACKGROUND,
                show=False,
                size=(400, 400),
            )

        def label(parent: Any, text: str) -> Any:
            # parent: a canvas scene or a view, in pixels with y down
            return scene.visuals.Text(
                text,
                parent=parent,
                color=_LABEL_COLOR,
                font_size=8,
                anchor_x="left",
                anchor_y="bottom",
                pos=(6, 4),
            )

        def image(parent: Any) -> Any:
            return scene.visuals.Image(
                np.zeros((2, 2), np.float32),
                parent=parent,
                cmap=cmap,
                clim=(0.0, 1.0),
                texture_format="auto",
                interpolation="nearest",
            )

        # -- 3-D -------------------------------------------------------------------
        self.canvas3d = canvas()
        self.view3d = self.canvas3d.central_widget.add_view()
        self.volume = scene.visuals.Volume(
            np.zeros((2, 2, 2), np.float32),
            parent=self.view3d.scene,
            method=method,
            cmap=cmap,
            clim=(0.0, 1.0),
            texture_format="auto",
        )
        self.box = scene.visuals.Line(
            pos=np.zeros((2, 3), np.float32),
            connect="segments",
            color=(0.6, 0.6, 0.65, 0.8),
            parent=self.view3d.scene,
        )
        self.plane_outline = scene.visuals.Line(
            pos=np.zeros((2, 3), np.float32),
            connect="segments",
            color=_CURSOR_COLOR,
            width=2,
            parent=self.view3d.scene,
        )
        for outline in (self.box, self.plane_outline):
            outline.order = 10  # over the volume, never hidden in it
            outline.set_gl_state(depth_test=False, blend=True)
        self.view3d.camera = scene.TurntableCamera(
            fov=30, elevation=45, azimuth=-30, up="+z"
        )
        self.label3d = label(self.canvas3d.scene, "3-D")

        # -- orthogonal slices: XY | YZ over XZ, with axes in µm ---------------------
        # placed by `place_slices`; the cameras show µm (XZ / YZ aspect: the z stretch)
        self.canvas_ortho = canvas()
        panel = self.canvas_ortho.central_widget
        self.views2d: dict[str, Any] = {}
        self.images: dict[str, Any] = {}
        self.labels: dict[str, Any] = {}
        # flip y: row 0 on top; XZ has +z up
        for name, flip_y in (("xy", True), ("yz", True), ("xz", False)):
            view = scene.ViewBox(parent=panel, border_color=_BORDER_COLOR)
            view.camera = scene.PanZoomCamera(aspect=1, flip=(False, flip_y, False))
            self.views2d[name] = view
            self.images[name] = image(view.scene)
            self.labels[name] = label(view, name.upper())
        self.legend_box = scene.Widget(parent=panel)
        self.legend = label(self.legend_box, "")

        class Ticker(vispy_axis.Ticker):
            """vispy's ticker with `_axis_ticks` choosing the ticks."""

            def _get_tick_frac_labels(self) -> tuple[Any, Any, list[str]]:
                start, end = self.axis.domain  # end < start on a flipped axis
                length = float(np.linalg.norm(self.axis.pos[1] - self.axis.pos[0]))
                major, minor = _axis_ticks(start, end, length)
                span = (end - start) or 1.0
                labels = [f"{value:g}" for value in major]
                return (major - start) / span, (minor - start) / span, labels

        def axis(view_name: str, orientation: str, title: str) -> Any:
            widget = scene.AxisWidget(
                orientation=orientation,
                axis_label=title,
                axis_color=_AXIS_COLOR,
                tick_color=_AXIS_COLOR,
                text_color=_LABEL_COLOR,
                axis_width=1,
                tick_width=1,
                major_tick_length=5,
                minor_tick_length=2,
                tick_label_margin=6,
                tick_font_size=7,
                axis_label_margin=27 if orientation in ("left", "right") else 22,
                axis_font_size=8,
            )
            widget.axis.ticker = Ticker(widget.axis)
            widget.parent = panel
            widget.link_view(self.views2d[view_name])  # domain: the visible range
            return widget

        # named as the cursor lines: "xz_z" is the z axis of XZ
        self.axes = {
            "xz_x": axis("xz", "bottom", "x (µm)"),
            "xz_z": axis("xz", "left", "z (µm)"),
            "yz_z": axis("yz", "bottom", "z (µm)"),
            "yz_y": axis("yz", "right", "y (µm)"),
        }
        self.extents_um = (1.0, 1.0, 1.0)  # x, y and z as drawn (µm × z stretch)
        panel.events.resize.connect(self.place_slices)
        self.place_slices()

        # -- raw frame -------------------------------------------------------------
        self.canvas_raw = canvas()
        view = self.canvas_raw.central_widget.add_view()
        view.camera = scene.PanZoomCamera(aspect=1, flip=(False, True, False))
        self.views2d["raw"] = view
        self.images["raw"] = image(view.scene)
        self.labels["raw"] = label(view, "raw")

        lines = {
            "xy_x": ("xy", True),
            "xy_y": ("xy", False),
            "xz_z": ("xz", False),
            "yz_z": ("yz", True),
        }
        self.cursor_lines = {
            key: scene.visuals.InfiniteLine(
                0,
                color=_CURSOR_COLOR,
                vertical=vertical,
                parent=self.views2d[view_name].scene,
            )
            for key, (view_name, vertical) in lines.items()
        }
        for line in self.cursor_lines.values():
            line.order = 10  # drawn after (over) the image
            line.set_gl_state(depth_test=False, blend=True)

    def canvases(self) -> list[SceneCanvas]:
        return [self.canvas3d, self.canvas_ortho, self.canvas_raw]

    def place_slices(self, event: Any = None) -> None:
        """Lay the slice panes and their axes out on the ortho canvas::

            [z axis] [  XY  ] [  YZ  ] [y axis]
                              [z axis]
            [z axis] [  XZ  ] [legend]
                     [x axis]

        Each pane is sized as the extent it shows (`extents_um`, z as drawn), at one
        scale, so the images fill their panes and XZ lines up with XY in x, YZ with XY
        in y: the x axis under XZ and the y axis right of YZ read for XY too.
        """
        w, h, d = self.extents_um
        width, height = self.canvas_ortho.central_widget.size
        room_w = width - 2 * (_EDGE + _AXIS_WIDTH) - _GAP
        room_h = height - 2 * (_EDGE + _AXIS_HEIGHT)
        px_per_um = max(min(room_w / (w + d), room_h / (h + d)), 1e-6)
        pw, ph, pd = (max(px_per_um * extent, 1.0) for extent in (w, h, d))
        x0 = _EDGE + _AXIS_WIDTH + max(room_w - pw - pd, 0) / 2  # centred
        y0 = _EDGE + max(room_h - ph - pd, 0) / 2
        x1 = x0 + pw + _GAP  # the YZ column
        y1 = y0 + ph + _AXIS_HEIGHT  # the XZ row
        rects = {  # (x, y, width, height), pixels from the top left
            "xz_x": (x0, y1 + pd, pw, _AXIS_HEIGHT),
            "xz_z": (x0 - _AXIS_WIDTH, y1, _AXIS_WIDTH, pd),
            "yz_z": (x1, y0 + ph, pd, _AXIS_HEIGHT),
            "yz_y": (x1 + pd, y0, _AXIS_WIDTH, ph),
            "xy": (x0, y0, pw, ph),
            "yz": (x1, y0, pd, ph),
            "xz": (x0, y1, pw, pd),
        }
        # the axes first: an axis reads its view's range when that view changes
        for name, (x, y, rw, rh) in rects.items():
            widget = self.axes[name] if name in self.axes else self.views2d[name]
            widget.rect = self._Rect(x, y, rw, rh)
        self.legend_box.rect = self._Rect(x1, y1, pd, pd)

    def transform(self, scale: Sequence[float], translate: Sequence[float]) -> Any:
        return self._STTransform(scale=tuple(scale), translate=tuple(translate))


class VolumeView(QWidget):
    """Live display of one refocused volume and the raw frame it came from.

    A rotatable 3-D rendering (drag to rotate, wheel to zoom), the XY slice at the
    chosen plane, the XZ and YZ slices through the cursor (double-click the XY view to
    move it) with axes in µm, and the raw frame; a plane slider in µm, contrast limits
    (auto or manual), a colormap and a 3-D rendering method.

    Parameters
    ----------
    use_gl : bool, optional
        False draws nothing (data only); None (default) uses OpenGL when available.
    parent : QWidget, optional
        Qt parent.
    """

    plane_changed = Signal(int)
    """Emitted with the new plane index when the displayed plane changes."""

    def __init__(self, *, use_gl: bool | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self._volume: np.ndarray | None = None
        self._volume_index: int | None = None
        self._frame: np.ndarray | None = None
        self._frame_index: int | None = None
        self._planes_um = np.zeros(0)
        self._plane_index = 0
        self._cursor_yx: tuple[int, int] | None = None
        self._pixel_size_um = 1.0
        self._auto_contrast = True
        self._clim = (0.0, 1.0)
        self._frame_clim = (0.0, 1.0)
        self._colormap = COLORMAPS[0]
        self._method = "mip"
        self._z_scale: float | None = None
        self._shape_shown: tuple[object, ...] | None = None
        self._frame_framing: tuple[Any, ...] | None = None
        self.volumes_drawn = 0

        self._scenes: _Scenes | None = None
        self.gl_error: str | None = "3-D view turned off (use_gl=False)."
        if use_gl is not False:
            self.gl_error = _probe_opengl()
            if self.gl_error is None:
                try:
                    self._scenes = _Scenes(self._method, self._colormap)
                except Exception as error:  # any GL/vispy failure: say it, go on
                    _log.exception("Could not create the vispy canvases")
                    self.gl_error = f"3-D view unavailable: OpenGL failed ({error})."
        self._build_ui()

    # -- layout ------------------------------------------------------------------------
    def _build_ui(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        # 3-D on the left; the slices over the raw frame on the right
        self._splitter = QSplitter(Qt.Orientation.Horizontal)
        if self._scenes is not None:
            for canvas in self._scenes.canvases():
                canvas.native.setMinimumSize(160, 160)
                canvas.native.setSizePolicy(
                    QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding
                )
            right = QSplitter(Qt.Orientation.Vertical)
            right.addWidget(self._scenes.canvas_ortho.native)
            right.addWidget(self._scenes.canvas_raw.native)
            right.setStretchFactor(0, 3)
            right.setStretchFactor(1, 2)
            self._splitter.addWidget(self._scenes.canvas3d.native)
            self._splitter.addWidget(right)
            self._splitter.setStretchFactor(0, 1)
            self._splitter.setStretchFactor(1, 1)
            self._scenes.canvas_ortho.events.mouse_double_click.connect(
                self._on_2d_click
            )
        else:
            message = QLabel(self.gl_error or "")
            message.setObjectName("gl_error")
            message.setWordWrap(True)
            message.setAlignment(Qt.AlignmentFlag.AlignCenter)
            message.setMinimumSize(300, 200)
            self._splitter.addWidget(message)
        layout.addWidget(self._splitter, 1)

        bar = QHBoxLayout()
        bar.addWidget(QLabel("Plane"))
        self.plane_slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.plane_slider.setRange(0.0, 0.0)
        self.plane_slider.setDecimals(2)
        self.plane_slider.setToolTip("Refocus plane shown in XY, in µm from the focus")
        self.plane_slider.valueChanged.connect(self._on_slider)
        bar.addWidget(self.plane_slider, 2)
        bar.addWidget(QLabel("µm"))

        self.auto_contrast_box = QCheckBox("Auto")
        self.auto_contrast_box.setChecked(True)
        self.auto_contrast_box.setToolTip(
            f"Contrast from the {AUTO_PERCENTILES[0]}-{AUTO_PERCENTILES[1]} "
            "percentiles of each volume"
        )
        self.auto_contrast_box.toggled.connect(self.set_auto_contrast)
        bar.addWidget(QLabel("Contrast"))
        bar.addWidget(self.auto_contrast_box)
        self.clim_min_box = QDoubleSpinBox()
        self.clim_max_box = QDoubleSpinBox()
        for box in (self.clim_min_box, self.clim_max_box):
            box.setRange(-1e9, 1e9)
            box.setDecimals(1)
            box.setKeyboardTracking(False)
            box.valueChanged.connect(self._on_clim_boxes)
            bar.addWidget(box)
        self.colormap_box = QComboBox()
        self.colormap_box.addItems(COLORMAPS)
        self.colormap_box.currentTextChanged.connect(self.set_colormap)
        bar.addWidget(self.colormap_box)
        self.method_box = QComboBox()
        for method, description in RENDER_METHODS.items():
            self.method_box.addItem(method, method)
            index = self.method_box.count() - 1
            self.method_box.setItemData(index, description, Qt.ItemDataRole.ToolTipRole)
        self.method_box.currentTextChanged.connect(self.set_render_method)
        bar.addWidget(self.method_box)
        bar.addWidget(QLabel("z ×"))
        self.z_scale_box = QComboBox()
        self.z_scale_box.addItems(["auto", *(f"{f:g}" for f in Z_SCALES)])
        self.z_scale_box.setToolTip(
            "Stretch z for display (1 = physical proportions; the XZ and YZ axes "
            "stay in µm)"
        )
        self.z_scale_box.currentTextChanged.connect(self._on_z_scale_box)
        bar.addWidget(self.z_scale_box)
        layout.addLayout(bar)
        self._show_clim_in_boxes()

    # -- data in -----------------------------------------------------------------------
    def set_pixel_size(self, pixel_size_um: float) -> None:
        """Set the sample-plane pixel size (µm) used for the x and y axes."""
        if not pixel_size_um > 0:
            raise ValueError(f"pixel size must be > 0 µm, got {pixel_size_um}")
        if pixel_size_um != self._pixel_size_um:
            self._pixel_size_um = float(pixel_size_um)
            self._shape_shown = None  # re-frame the cameras
            self._redraw()
            self._draw_frame()

    def set_volume(
        self,
        volume: np.ndarray,
        planes_um: Sequence[float] | None = None,
        *,
        index: int | None = None,
    ) -> None:
        """Show ``volume`` (N, Y, X) refocused to ``planes_um`` (µm, increasing).

        ``planes_um`` may be left out while the number of planes does not change.
        ``index`` is the number of the frame it came from (shown in the labels).
        """
        volume = np.asarray(volume)
        if volume.ndim != 3 or 0 in volume.shape:
            raise ValueError(f"a volume is (planes, y, x); got shape {volume.shape}")
        if volume.dtype != np.float32:
            volume = volume.astype(np.float32)
        n_planes = volume.shape[0]
        if planes_um is not None:
            planes = np.asarray(planes_um, dtype=float).ravel()
        elif self._planes_um.size != n_planes:
            planes = np.arange(n_planes, dtype=float)
        else:
            planes = self._planes_um
        if planes.size != n_planes:
            raise ValueError(
                f"{planes.size} plane positions for a volume of {n_planes} planes"
            )
        if planes.size > 1 and np.any(np.diff(planes) <= 0):
            raise ValueError("plane positions must increase")
        old_plane_um = self.plane_um if self._planes_um.size else 0.0
        planes_changed = not np.array_equal(planes, self._planes_um)
        self._volume = volume
        self._volume_index = index
        self._planes_um = planes
        if self._cursor_yx is None or not (
            self._cursor_yx[0] < volume.shape[1]
            and self._cursor_yx[1] < volume.shape[2]
        ):
            self._cursor_yx = (volume.shape[1] // 2, volume.shape[2] // 2)
        if planes_changed:
            self._plane_index = self._nearest_plane(old_plane_um)
            self._update_slider_range()
        if self._auto_contrast:
            self._clim = auto_contrast_limits(volume)
            self._show_clim_in_boxes()
        self.volumes_drawn += 1
        self._redraw(upload_volume=True)

    def set_frame(self, frame: np.ndarray, *, index: int | None = None) -> None:
        """Show the raw camera frame (Y, X)."""
        frame = np.asarray(frame)
        if frame.ndim != 2:
            raise ValueError(f"a frame is (y, x); got shape {frame.shape}")
        self._frame = frame
        self._frame_index = index
        self._frame_clim = auto_contrast_limits(frame)
        self._draw_frame()

    def clear(self) -> None:
        """Forget the volume and frame (e.g. before a run with another shape)."""
        self._volume = None
        self._frame = None
        self._volume_index = self._frame_index = None
        self._shape_shown = self._frame_framing = None

    # -- navigation --------------------------------------------------------------------
    @property
    def planes_um(self) -> np.ndarray:
        """Positions of the volume's planes, µm from the focus (a copy)."""
        return self._planes_um.copy()

    @property
    def plane_index(self) -> int:
        """Index of the plane shown in XY."""
        return self._plane_index

    @property
    def plane_um(self) -> float:
        """Position of the plane shown in XY, µm from the focus."""
        if self._planes_um.size == 0:
            return 0.0
        return float(self._planes_um[self._plane_index])

    def set_plane_um(self, z_um: float) -> int:
        """Show the plane nearest to ``z_um`` in XY; returns its index."""
        index = self._nearest_plane(z_um)
        self.set_plane_index(index)
        return index

    def set_plane_index(self, index: int) -> None:
        """Show plane ``index`` in XY."""
        if self._planes_um.size == 0:
            return
        index = int(np.clip(index, 0, self._planes_um.size - 1))
        changed = index != self._plane_index
        self._plane_index = index
        self._sync_slider()
        if changed:
            self._redraw()
            self.plane_changed.emit(index)

    @property
    def cursor_yx(self) -> tuple[int, int] | None:
        """Pixel (y, x) that the XZ and YZ slices pass through."""
        return self._cursor_yx

    def set_cursor(self, y: int, x: int) -> None:
        """Pass the XZ slice through row ``y`` and the YZ slice through column ``x``."""
        if self._volume is not None:
            y = int(np.clip(y, 0, self._volume.shape[1] - 1))
            x = int(np.clip(x, 0, self._volume.shape[2] - 1))
        self._cursor_yx = (int(y), int(x))
        self._redraw()

    # -- what is shown (plain data) ---------------------------------------------------
    @property
    def volume(self) -> np.ndarray | None:
        """The volume shown (N, Y, X) float32, or None."""
        return self._volume

    @property
    def volume_index(self) -> int | None:
        """Frame number of the volume shown, if given."""
        return self._volume_index

    @property
    def frame(self) -> np.ndarray | None:
        """The raw frame shown, or None."""
        return self._frame

    @property
    def frame_index(self) -> int | None:
        """Frame number of the raw frame shown, if given."""
        return self._frame_index

    def slices(self) -> dict[str, np.ndarray]:
        """The orthogonal slices shown: ``xy`` (Y, X), ``xz`` (N, X), ``yz`` (Y, N).

        Empty when no volume was set.
        """
        if self._volume is None or self._cursor_yx is None:
            return {}
        y, x = self._cursor_yx
        return {
            "xy": self._volume[self._plane_index],
            "xz": self._volume[:, y, :],
            "yz": self._volume[:, :, x].T,
        }

    @property
    def voxel_size_um(self) -> tuple[float, float, float]:
        """(z, y, x) voxel size used for display, µm."""
        dz = (
            float(np.mean(np.diff(self._planes_um)))
            if self._planes_um.size > 1
            else 1.0
        )
        return (dz, self._pixel_size_um, self._pixel_size_um)

    # -- display settings --------------------------------------------------------------
    @property
    def clim(self) -> tuple[float, float]:
        """Contrast limits of the volume and slices."""
        return self._clim

    @property
    def frame_clim(self) -> tuple[float, float]:
        """Contrast limits of the raw frame (always automatic)."""
        return self._frame_clim

    @property
    def auto_contrast(self) -> bool:
        """Whether each new volume sets the contrast limits."""
        return self._auto_contrast

    def set_auto_contrast(self, auto: bool) -> None:
        """Set contrast from each volume's percentiles (True) or keep it fixed."""
        self._auto_contrast = bool(auto)
        self.auto_contrast_box.blockSignals(True)
        self.auto_contrast_box.setChecked(self._auto_contrast)
        self.auto_contrast_box.blockSignals(False)
        if self._auto_contrast and self._volume is not None:
            self._clim = auto_contrast_limits(self._volume)
            self._show_clim_in_boxes()
            self._apply_display()

    def set_clim(self, low: float, high: float) -> None:
        """Fix the contrast limits (turns auto contrast off)."""
        if not high > low:
            raise ValueError(f"contrast limits need low < high, got {low}, {high}")
        self._clim = (float(low), float(high))
        self.set_auto_contrast(False)
        self._show_clim_in_boxes()
        self._apply_display()

    @property
    def colormap(self) -> str:
        """Name of the colormap."""
        return self._colormap

    def set_colormap(self, name: str) -> None:
        """Use colormap ``name`` (any name the `cmap` package knows)."""
        vispy_cmap = _vispy_colormap(name)  # raises for unknown names
        self._colormap = name
        if self.colormap_box.currentText() != name:
            self.colormap_box.blockSignals(True)
            if self.colormap_box.findText(name) < 0:
                self.colormap_box.addItem(name)
            self.colormap_box.setCurrentText(name)
            self.colormap_box.blockSignals(False)
        if self._scenes is not None:
            self._scenes.volume.cmap = vispy_cmap
            for image in self._scenes.images.values():
                image.cmap = vispy_cmap
            self._update_canvases()
            self._scenes.canvas_raw.update()

    @property
    def render_method(self) -> str:
        """vispy Volume rendering method of the 3-D view."""
        return self._method

    def set_render_method(self, method: str) -> None:
        """Render the 3-D view with ``method`` (a key of `RENDER_METHODS`)."""
        if method not in RENDER_METHODS:
            raise ValueError(f"unknown render method {method!r}")
        self._method = method
        if self.method_box.currentText() != method:
            self.method_box.blockSignals(True)
            self.method_box.setCurrentText(method)
            self.method_box.blockSignals(False)
        if self._scenes is not None:
            self._scenes.volume.method = method
            self._scenes.canvas3d.update()

    @property
    def z_scale(self) -> float:
        """Display stretch of z (1 = physical).

        Volumes a few µm deep but 100s of µm wide would be slivers otherwise. Auto
        picks the smallest of `Z_SCALES` that makes the depth at least 30 % of the
        width. The labels say when z is stretched. The XZ and YZ slices are only drawn
        stretched (their axes stay in true µm); the 3-D view is stretched in its
        coordinates.
        """
        if self._z_scale is not None:
            return self._z_scale
        if self._volume is None or self._planes_um.size < 2:
            return 1.0
        dz, py, px = self.voxel_size_um
        depth = self._planes_um.size * dz
        extent = max(self._volume.shape[1] * py, self._volume.shape[2] * px)
        for factor in Z_SCALES:
            if depth * factor >= 0.3 * extent:
                return factor
        return Z_SCALES[-1]

    def set_z_scale(self, factor: float | None) -> None:
        """Stretch z by ``factor`` for display (None: automatic, see `z_scale`)."""
        if factor is not None and not factor > 0:
            raise ValueError(f"z scale must be > 0, got {factor}")
        self._z_scale = None if factor is None else float(factor)
        text = "auto" if factor is None else f"{factor:g}"
        if self.z_scale_box.currentText() != text:
            self.z_scale_box.blockSignals(True)
            if self.z_scale_box.findText(text) < 0:
                self.z_scale_box.addItem(text)
            self.z_scale_box.setCurrentText(text)
            self.z_scale_box.blockSignals(False)
        self._redraw()

    def _on_z_scale_box(self, text: str) -> None:
        self.set_z_scale(None if text == "auto" else float(text))

    # -- vispy -------------------------------------------------------------------------
    @property
    def gl_available(self) -> bool:
        """Whether the OpenGL views exist (False: data only, see `gl_error`)."""
        return self._scenes is not None

    def canvases(self) -> list[SceneCanvas]:
        """The vispy canvases (3-D, then 2-D); empty without OpenGL."""
        return self._scenes.canvases() if self._scenes is not None else []

    def camera_angles(self) -> tuple[float, float]:
        """(azimuth, elevation) of the 3-D view in degrees."""
        if self._scenes is None:
            return (0.0, 0.0)
        camera = self._scenes.view3d.camera
        return (float(camera.azimuth), float(camera.elevation))

    def set_camera_angles(self, azimuth: float, elevation: float) -> None:
        """Turn the 3-D view (as dragging it with the mouse does)."""
        if self._scenes is None:
            return
        camera = self._scenes.view3d.camera
        camera.azimuth = azimuth
        camera.elevation = elevation

    # -- internals ---------------------------------------------------------------------
    def _nearest_plane(self, z_um: float) -> int:
        if self._planes_um.size == 0:
            return 0
        return int(np.argmin(np.abs(self._planes_um - z_um)))

    def _update_slider_range(self) -> None:
        planes = self._planes_um
        self.plane_slider.blockSignals(True)
        self.plane_slider.setRange(float(planes[0]), float(planes[-1]))
        step = float(np.min(np.diff(planes))) if planes.size > 1 else 1.0
        # superqt's double slider takes float steps; its stubs say int
        self.plane_slider.setSingleStep(step)  # type: ignore[arg-type]
        self.plane_slider.setPageStep(step)  # type: ignore[arg-type]
        self.plane_slider.blockSignals(False)
        self._sync_slider()

    def _sync_slider(self) -> None:
        self.plane_slider.blockSignals(True)
        self.plane_slider.setValue(self.plane_um)
        self.plane_slider.blockSignals(False)

    def _on_slider(self, value: float) -> None:
        index = self._nearest_plane(value)
        if index != self._plane_index:
            self.set_plane_index(index)
        elif abs(value - self.plane_um) > 1e-9:
            self._sync_slider()  # snap the handle onto the plane

    def _on_clim_boxes(self, _value: float) -> None:
        low, high = self.clim_min_box.value(), self.clim_max_box.value()
        if high > low and (low, high) != self._clim:
            self.set_clim(low, high)

    def _show_clim_in_boxes(self) -> None:
        for box, value in zip(
            (self.clim_min_box, self.clim_max_box), self._clim, strict=True
        ):
            box.blockSignals(True)
            box.setValue(value)
            box.blockSignals(False)

    def _on_2d_click(self, event: Any) -> None:
        """Double-click in the XY view: move the XZ/YZ cursor there."""
        if self._scenes is None or self._volume is None:
            return
        canvas = self._scenes.canvas_ortho
        view = self._scenes.views2d["xy"]
        u, v = canvas.scene.node_transform(view).map(event.pos)[:2]
        if not (0 <= u < view.width and 0 <= v < view.height):
            return
        x_um, y_um = canvas.scene.node_transform(view.scene).map(event.pos)[:2]
        self.set_cursor(
            int(y_um // self._pixel_size_um), int(x_um // self._pixel_size_um)
        )

    def _redraw(self, *, upload_volume: bool = False) -> None:
        if self._scenes is None or self._volume is None:
            return
        s = self._scenes
        volume = self._volume
        n, height, width = volume.shape
        dz, py, px = self.voxel_size_um
        zs = self.z_scale
        planes = self._planes_um
        # voxel k is centred on planes[k] (as pixel i on (i+½)·px); the 3-D view draws
        # z × zs, the slices draw µm (their cameras stretch z, see `_frame_cameras`)
        z_lo, z_hi = planes[0] - dz / 2, planes[-1] + dz / 2
        if upload_volume:  # a 3-D texture upload: not for a plane or cursor change
            s.volume.set_data(volume, clim=self._clim)  # vispy order: (z, y, x)
        s.volume.transform = s.transform((px, py, dz * zs), (0, 0, z_lo * zs))
        slices = self.slices()
        s.images["xy"].set_data(slices["xy"])
        s.images["xy"].transform = s.transform((px, py), (0, 0))
        s.images["xz"].set_data(slices["xz"])
        s.images["xz"].transform = s.transform((px, dz), (0, z_lo))
        s.images["yz"].set_data(slices["yz"])
        s.images["yz"].transform = s.transform((dz, py), (z_lo, 0))
        y, x = self._cursor_yx or (0, 0)
        z = self.plane_um
        s.cursor_lines["xy_x"].set_data(pos=(x + 0.5) * px)
        s.cursor_lines["xy_y"].set_data(pos=(y + 0.5) * py)
        s.cursor_lines["xz_z"].set_data(pos=z)
        s.cursor_lines["yz_z"].set_data(pos=z)
        w_um, h_um = width * px, height * py
        s.box.set_data(pos=_box_edges(w_um, h_um, z_lo * zs, z_hi * zs))
        s.plane_outline.set_data(pos=_rectangle(w_um, h_um, z * zs))
        frame_note = (
            "" if self._volume_index is None else f", frame {self._volume_index}"
        )
        stretch = f", z ×{zs:g}" if zs != 1 else ""
        s.label3d.text = (
            f"3-D {_SHORT_METHOD_NAMES[self._method]}: {n} planes "
            f"{planes[0]:+g} … {planes[-1]:+g} µm{stretch}{frame_note}"
        )
        s.labels["xy"].text = f"XY  z = {z:+.2f} µm"
        s.labels["xz"].text = f"XZ  y = {y * py:.1f} µm"
        s.labels["yz"].text = f"YZ  x = {x * px:.1f} µm"
        s.legend.text = f"z ×{zs:g} in XZ, YZ, 3-D\n(aspect not 1:1)" if zs != 1 else ""
        geometry = (volume.shape, px, py, z_lo, z_hi, zs)
        if self._shape_shown != geometry:
            self._frame_cameras(w_um, h_um, z_lo, z_hi, zs)
            self._shape_shown = geometry
        self._apply_display()

    def _frame_cameras(
        self, w_um: float, h_um: float, z_lo: float, z_hi: float, zs: float
    ) -> None:
        """Show the whole volume: z in µm from ``z_lo`` to ``z_hi``, drawn × ``zs``."""
        assert self._scenes is not None
        s = self._scenes
        s.view3d.camera.set_range(x=(0, w_um), y=(0, h_um), z=(z_lo * zs, z_hi * zs))
        # px per µm of z = zs × px per µm of x or y; aspect = (px per x) / (px per y)
        s.views2d["xz"].camera.aspect = 1 / zs
        s.views2d["yz"].camera.aspect = zs
        # the slice panes sized as the extents they show, then the cameras fill them
        s.extents_um = (w_um, h_um, (z_hi - z_lo) * zs)
        s.place_slices()
        # (x, y, width, height): exact, where set_range(margin=0) pads by 0.1 µm
        s.views2d["xy"].camera.rect = (0, 0, w_um, h_um)
        s.views2d["xz"].camera.rect = (0, z_lo, w_um, z_hi - z_lo)
        s.views2d["yz"].camera.rect = (z_lo, 0, z_hi - z_lo, h_um)

    def _draw_frame(self) -> None:
        if self._scenes is None or self._frame is None:
            return
        s = self._scenes
        image = s.images["raw"]
        framing = (self._frame.shape, self._pixel_size_um)
        first = framing != self._frame_framing
        self._frame_framing = framing
        image.set_data(self._frame.astype(np.float32, copy=False))
        image.clim = self._frame_clim
        px = self._pixel_size_um
        image.transform = s.transform((px, px), (0, 0))
        note = "" if self._frame_index is None else f"  frame {self._frame_index}"
        s.labels["raw"].text = f"raw{note}"
        if first:
            fh, fw = self._frame.shape
            s.views2d["raw"].camera.set_range(x=(0, fw * px), y=(0, fh * px), margin=0)
        s.canvas_raw.update()

    def _apply_display(self) -> None:
        if self._scenes is None:
            return
        s = self._scenes
        s.volume.clim = self._clim
        for name in ("xy", "xz", "yz"):
            s.images[name].clim = self._clim
        self._update_canvases()

    def _update_canvases(self) -> None:
        if self._scenes is not None:
            self._scenes.canvas3d.update()
            self._scenes.canvas_ortho.update()


def _box_edges(w: float, h: float, z0: float, z1: float) -> np.ndarray:
    """The 12 edges of the box [0, w] × [0, h] × [z0, z1] as segment pairs."""
    corners = np.array(
        [[x, y, z] for z in (z0, z1) for y in (0, h) for x in (0, w)], np.float32
    )
    edges = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7)]
    edges += [(0, 4), (1, 5), (2, 6), (3, 7)]
    return corners[np.array(edges).ravel()]


def _rectangle(w: float, h: float, z: float) -> np.ndarray:
    """The outline of the plane at height ``z`` as segment pairs."""
    corners = np.array([[0, 0, z], [w, 0, z], [w, h, z], [0, h, z]], np.float32)
    return corners[[0, 1, 1, 2, 2, 3, 3, 0]]
