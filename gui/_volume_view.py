"""The live volume display: a rotatable 3-D view, orthogonal slices and the raw frame.

Data and drawing are kept apart. `VolumeView` holds the newest volume, frame, plane,
cursor, contrast limits and colormap as plain numpy data (what tests assert on) and
shows them in its control bar (`DisplayControls`) and in three vispy canvases: the 3-D
view (`Volume3DView`, so rotating it redraws nothing else), the XY / YZ / XZ slices
(`SliceViews`) and the raw frame (`FrameView`). Without OpenGL (Qt's ``offscreen``
platform, a remote session without GLX) the canvases are replaced by a message that says
why, and everything else keeps working.

Coordinates are physical: x and y in µm from the pixel size, z in µm from the list of
refocus planes (the mean spacing, for planes that are not evenly spaced). z can be
stretched for display (`VolumeView.z_scale`); the slices' axes still read true µm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QLabel, QSizePolicy, QSplitter, QVBoxLayout, QWidget

from deepz_live.gui._display_controls import DisplayControls
from deepz_live.gui._slice_views import FrameView, SliceViews
from deepz_live.gui._vispy_common import DisplayGeometry, probe_opengl, vispy_colormap
from deepz_live.gui._volume_3d import Volume3DView

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

Z_SCALES: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
"""z display stretches offered (``auto`` picks one, see `VolumeView.z_scale`)."""

AUTO_PERCENTILES = (0.5, 99.8)
"""Auto contrast spans these percentiles of the volume (or frame)."""


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


@dataclass(frozen=True)
class _Scenes:
    """The three canvases' views, made only where OpenGL works."""

    volume3d: Volume3DView
    slices: SliceViews
    frame: FrameView

    @classmethod
    def create(cls, method: str, colormap: str) -> _Scenes:
        cmap = vispy_colormap(colormap)
        return cls(Volume3DView(method, cmap), SliceViews(cmap), FrameView(cmap))

    def canvases(self) -> list[SceneCanvas]:
        return [self.volume3d.canvas, self.slices.canvas, self.frame.canvas]


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
        self._geometry_shown: DisplayGeometry | None = None  # the cameras' framing
        self._frame_framing: tuple[Any, ...] | None = None
        self.volumes_drawn = 0

        self._scenes: _Scenes | None = None
        self.gl_error: str | None = "3-D view turned off (use_gl=False)."
        if use_gl is not False:
            self.gl_error = probe_opengl()
            if self.gl_error is None:
                try:
                    self._scenes = _Scenes.create(self._method, self._colormap)
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
            right.addWidget(self._scenes.slices.canvas.native)
            right.addWidget(self._scenes.frame.canvas.native)
            right.setStretchFactor(0, 3)
            right.setStretchFactor(1, 2)
            self._splitter.addWidget(self._scenes.volume3d.canvas.native)
            self._splitter.addWidget(right)
            self._splitter.setStretchFactor(0, 1)
            self._splitter.setStretchFactor(1, 1)
            self._scenes.slices.canvas.events.mouse_double_click.connect(
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

        low, high = AUTO_PERCENTILES
        tip = f"Contrast from the {low}-{high} percentiles of each volume"
        self._controls = DisplayControls(COLORMAPS, RENDER_METHODS, Z_SCALES, tip)
        # the widgets are the view's public attributes (as before the bar was split)
        self.plane_slider = self._controls.plane_slider
        self.auto_contrast_box = self._controls.auto_contrast_box
        self.clim_min_box = self._controls.clim_min_box
        self.clim_max_box = self._controls.clim_max_box
        self.colormap_box = self._controls.colormap_box
        self.method_box = self._controls.method_box
        self.z_scale_box = self._controls.z_scale_box
        self.plane_slider.valueChanged.connect(self._on_slider)
        self.auto_contrast_box.toggled.connect(self.set_auto_contrast)
        for box in (self.clim_min_box, self.clim_max_box):
            box.valueChanged.connect(self._on_clim_boxes)
        self.colormap_box.currentTextChanged.connect(self.set_colormap)
        self.method_box.currentTextChanged.connect(self.set_render_method)
        self.z_scale_box.currentTextChanged.connect(self._on_z_scale_box)
        layout.addWidget(self._controls)
        self._controls.show_clim(self._clim)

    # -- data in -----------------------------------------------------------------------
    def set_pixel_size(self, pixel_size_um: float) -> None:
        """Set the sample-plane pixel size (µm) used for the x and y axes."""
        if not pixel_size_um > 0:
            raise ValueError(f"pixel size must be > 0 µm, got {pixel_size_um}")
        if pixel_size_um != self._pixel_size_um:
            self._pixel_size_um = float(pixel_size_um)
            self._geometry_shown = None  # re-frame the cameras
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
            self._controls.show_planes(planes, self.plane_um)
        if self._auto_contrast:
            self._clim = auto_contrast_limits(volume)
            self._controls.show_clim(self._clim)
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
        self._geometry_shown = self._frame_framing = None

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
        self._controls.show_plane(self.plane_um)
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
        self._controls.show_auto_contrast(self._auto_contrast)
        if self._auto_contrast and self._volume is not None:
            self._clim = auto_contrast_limits(self._volume)
            self._controls.show_clim(self._clim)
            self._apply_display()

    def set_clim(self, low: float, high: float) -> None:
        """Fix the contrast limits (turns auto contrast off)."""
        if not high > low:
            raise ValueError(f"contrast limits need low < high, got {low}, {high}")
        self._clim = (float(low), float(high))
        self.set_auto_contrast(False)
        self._controls.show_clim(self._clim)
        self._apply_display()

    @property
    def colormap(self) -> str:
        """Name of the colormap."""
        return self._colormap

    def set_colormap(self, name: str) -> None:
        """Use colormap ``name`` (any name the `cmap` package knows)."""
        vispy_cmap = vispy_colormap(name)  # raises for unknown names
        self._colormap = name
        self._controls.show_colormap(name)
        if self._scenes is not None:
            self._scenes.volume3d.set_cmap(vispy_cmap)
            self._scenes.slices.set_cmap(vispy_cmap)
            self._scenes.frame.set_cmap(vispy_cmap)
            for canvas in self._scenes.canvases():
                canvas.update()

    @property
    def render_method(self) -> str:
        """vispy Volume rendering method of the 3-D view."""
        return self._method

    def set_render_method(self, method: str) -> None:
        """Render the 3-D view with ``method`` (a key of `RENDER_METHODS`)."""
        if method not in RENDER_METHODS:
            raise ValueError(f"unknown render method {method!r}")
        self._method = method
        self._controls.show_render_method(method)
        if self._scenes is not None:
            self._scenes.volume3d.set_method(method)

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
        self._controls.show_z_scale(factor)
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
        return self._scenes.volume3d.camera_angles()

    def set_camera_angles(self, azimuth: float, elevation: float) -> None:
        """Turn the 3-D view (as dragging it with the mouse does)."""
        if self._scenes is not None:
            self._scenes.volume3d.set_camera_angles(azimuth, elevation)

    # -- internals ---------------------------------------------------------------------
    def _nearest_plane(self, z_um: float) -> int:
        if self._planes_um.size == 0:
            return 0
        return int(np.argmin(np.abs(self._planes_um - z_um)))

    def _on_slider(self, value: float) -> None:
        index = self._nearest_plane(value)
        if index != self._plane_index:
            self.set_plane_index(index)
        elif abs(value - self.plane_um) > 1e-9:
            self._controls.show_plane(self.plane_um)  # snap the handle onto the plane

    def _on_clim_boxes(self, _value: float) -> None:
        low, high = self.clim_min_box.value(), self.clim_max_box.value()
        if high > low and (low, high) != self._clim:
            self.set_clim(low, high)

    def _on_2d_click(self, event: Any) -> None:
        """Double-click in the XY view: move the XZ/YZ cursor there."""
        if self._scenes is None or self._volume is None:
            return
        position = self._scenes.slices.xy_position_um(event.pos)
        if position is not None:
            x_um, y_um = position
            px = self._pixel_size_um
            self.set_cursor(int(y_um // px), int(x_um // px))

    def _redraw(self, *, upload_volume: bool = False) -> None:
        if self._scenes is None or self._volume is None or self._cursor_yx is None:
            return
        s = self._scenes
        dz, _, px = self.voxel_size_um
        geometry = DisplayGeometry.of(
            self._volume.shape, self._planes_um, px, dz, self.z_scale
        )
        if upload_volume:  # a 3-D texture upload: not for a plane or cursor change
            s.volume3d.upload(self._volume, self._clim)
        z = self.plane_um
        s.volume3d.draw(geometry, z, self._planes_um, self._volume_index)
        s.slices.draw(self.slices(), geometry, self._cursor_yx, z)
        if self._geometry_shown != geometry:
            s.volume3d.frame(geometry)
            s.slices.frame(geometry)
            self._geometry_shown = geometry
        self._apply_display()

    def _draw_frame(self) -> None:
        if self._scenes is None or self._frame is None:
            return
        framing = (self._frame.shape, self._pixel_size_um)
        reframe = framing != self._frame_framing
        self._frame_framing = framing
        self._scenes.frame.draw(
            self._frame,
            self._frame_clim,
            self._pixel_size_um,
            self._frame_index,
            reframe=reframe,
        )

    def _apply_display(self) -> None:
        if self._scenes is None:
            return
        self._scenes.volume3d.set_clim(self._clim)
        self._scenes.slices.set_clim(self._clim)
        self._scenes.volume3d.canvas.update()
        self._scenes.slices.canvas.update()
