"""The 2-D views: the XY, YZ and XZ slices with axes in µm, and the raw frame.

The slices share one canvas, laid out as the volume's extents at one scale (see
`SliceViews.place`), so that XZ lines up with XY in x and YZ with XY in y. Their cameras
count in µm; when z is stretched for display the XZ and YZ panes are drawn taller
(wider) through their cameras' aspect, so the axes still read true µm. Cursor lines
mark where the slices cross. The raw frame (up to 30 per second) has a canvas of its
own, so that a new frame redraws nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from vispy import scene
from vispy.geometry import Rect

from deepz_live.gui._um_axes import micrometre_axis
from deepz_live.gui._vispy_common import (
    CURSOR_COLOR,
    add_image,
    add_label,
    new_canvas,
    st_transform,
)

if TYPE_CHECKING:
    from vispy.scene import SceneCanvas

    from deepz_live.gui._vispy_common import DisplayGeometry

__all__ = ["FrameView", "SliceViews"]

_BORDER_COLOR = (0.3, 0.3, 0.35, 1.0)
_AXIS_WIDTH = 44  # px beside a pane for a vertical axis: ticks, numbers and title
_AXIS_HEIGHT = 36  # px under a pane for a horizontal axis
_GAP = 2  # px between XY and YZ
_EDGE = 6  # px kept free along the canvas edges (tick labels stick out of the axes)


class SliceViews:
    """XY | YZ over XZ on one canvas, with axes in µm and the cursor lines."""

    def __init__(self, cmap: Any) -> None:
        self.canvas: SceneCanvas = new_canvas()
        panel = self.canvas.central_widget
        self.views: dict[str, Any] = {}
        self.images: dict[str, Any] = {}
        self.labels: dict[str, Any] = {}
        # flip y: row 0 on top; XZ has +z up
        for name, flip_y in (("xy", True), ("yz", True), ("xz", False)):
            view = scene.ViewBox(parent=panel, border_color=_BORDER_COLOR)
            view.camera = scene.PanZoomCamera(aspect=1, flip=(False, flip_y, False))
            self.views[name] = view
            self.images[name] = add_image(view.scene, cmap)
            self.labels[name] = add_label(view, name.upper())
        self.legend_box = scene.Widget(parent=panel)
        self.legend = add_label(self.legend_box, "")
        # named as the cursor lines: "xz_z" is the z axis of XZ
        axes = {
            "xz_x": ("xz", "bottom", "x (µm)"),
            "xz_z": ("xz", "left", "z (µm)"),
            "yz_z": ("yz", "bottom", "z (µm)"),
            "yz_y": ("yz", "right", "y (µm)"),
        }
        self.axes = {
            key: micrometre_axis(orientation, title, panel, self.views[view_name])
            for key, (view_name, orientation, title) in axes.items()
        }
        self.extents_um = (1.0, 1.0, 1.0)  # x, y and z as drawn (µm × z stretch)
        panel.events.resize.connect(self.place)
        self.place()

        lines = {
            "xy_x": ("xy", True),
            "xy_y": ("xy", False),
            "xz_z": ("xz", False),
            "yz_z": ("yz", True),
        }
        self.cursor_lines = {
            key: scene.visuals.InfiniteLine(
                0,
                color=CURSOR_COLOR,
                vertical=vertical,
                parent=self.views[view_name].scene,
            )
            for key, (view_name, vertical) in lines.items()
        }
        for line in self.cursor_lines.values():
            line.order = 10  # drawn after (over) the image
            line.set_gl_state(depth_test=False, blend=True)

    def place(self, event: Any = None) -> None:
        """Lay the slice panes and their axes out on the canvas::

            [z axis] [  XY  ] [  YZ  ] [y axis]
                              [z axis]
            [z axis] [  XZ  ] [legend]
                     [x axis]

        Each pane is sized as the extent it shows (`extents_um`, z as drawn), at one
        scale, so the images fill their panes and XZ lines up with XY in x, YZ with XY
        in y: the x axis under XZ and the y axis right of YZ read for XY too.
        """
        w, h, d = self.extents_um
        width, height = self.canvas.central_widget.size
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
            widget = self.axes[name] if name in self.axes else self.views[name]
            widget.rect = Rect(x, y, rw, rh)
        self.legend_box.rect = Rect(x1, y1, pd, pd)

    def draw(
        self,
        slices: dict[str, np.ndarray],
        geometry: DisplayGeometry,
        cursor_yx: tuple[int, int],
        plane_um: float,
    ) -> None:
        """Show ``slices`` (see `VolumeView.slices`) and where they cross, in µm."""
        g = geometry
        px, dz, z_lo = g.pixel_size_um, g.dz_um, g.z_lo_um
        placements = {  # (scale, translate): pixel or plane indices to µm
            "xy": ((px, px), (0, 0)),
            "xz": ((px, dz), (0, z_lo)),
            "yz": ((dz, px), (z_lo, 0)),
        }
        for name, (scale, translate) in placements.items():
            self.images[name].set_data(slices[name])
            self.images[name].transform = st_transform(scale, translate)
        y, x = cursor_yx
        self.cursor_lines["xy_x"].set_data(pos=(x + 0.5) * px)
        self.cursor_lines["xy_y"].set_data(pos=(y + 0.5) * px)
        self.cursor_lines["xz_z"].set_data(pos=plane_um)
        self.cursor_lines["yz_z"].set_data(pos=plane_um)
        self.labels["xy"].text = f"XY  z = {plane_um:+.2f} µm"
        self.labels["xz"].text = f"XZ  y = {y * px:.1f} µm"
        self.labels["yz"].text = f"YZ  x = {x * px:.1f} µm"
        zs = g.z_scale
        self.legend.text = (
            f"z ×{zs:g} in XZ, YZ, 3-D\n(aspect not 1:1)" if zs != 1 else ""
        )

    def frame(self, geometry: DisplayGeometry) -> None:
        """Show the whole volume: z in µm, drawn × its display stretch."""
        g, zs = geometry, geometry.z_scale
        w_um, h_um, z_lo, depth = g.width_um, g.height_um, g.z_lo_um, g.depth_um
        # px per µm of z = zs × px per µm of x or y; aspect = (px per x) / (px per y)
        self.views["xz"].camera.aspect = 1 / zs
        self.views["yz"].camera.aspect = zs
        # the slice panes sized as the extents they show, then the cameras fill them
        self.extents_um = (w_um, h_um, depth * zs)
        self.place()
        # (x, y, width, height): exact, where set_range(margin=0) pads by 0.1 µm
        self.views["xy"].camera.rect = (0, 0, w_um, h_um)
        self.views["xz"].camera.rect = (0, z_lo, w_um, depth)
        self.views["yz"].camera.rect = (z_lo, 0, depth, h_um)

    def xy_position_um(self, canvas_pos: Any) -> tuple[float, float] | None:
        """(x, y) in µm under ``canvas_pos`` (pixels) in the XY pane; None outside."""
        view = self.views["xy"]
        u, v = self.canvas.scene.node_transform(view).map(canvas_pos)[:2]
        if not (0 <= u < view.width and 0 <= v < view.height):
            return None
        x_um, y_um = self.canvas.scene.node_transform(view.scene).map(canvas_pos)[:2]
        return (float(x_um), float(y_um))

    def set_clim(self, clim: tuple[float, float]) -> None:
        for image in self.images.values():
            image.clim = clim

    def set_cmap(self, cmap: Any) -> None:
        for image in self.images.values():
            image.cmap = cmap


class FrameView:
    """The raw camera frame on its own canvas, in µm."""

    def __init__(self, cmap: Any) -> None:
        self.canvas: SceneCanvas = new_canvas()
        self.view = self.canvas.central_widget.add_view()
        self.view.camera = scene.PanZoomCamera(aspect=1, flip=(False, True, False))
        self.image = add_image(self.view.scene, cmap)
        self.label = add_label(self.view, "raw")

    def draw(
        self,
        frame: np.ndarray,
        clim: tuple[float, float],
        pixel_size_um: float,
        index: int | None,
        *,
        reframe: bool,
    ) -> None:
        """Show ``frame`` (Y, X); ``reframe``: turn the camera to all of it."""
        self.image.set_data(frame.astype(np.float32, copy=False))
        self.image.clim = clim
        px = pixel_size_um
        self.image.transform = st_transform((px, px), (0, 0))
        note = "" if index is None else f"  frame {index}"
        self.label.text = f"raw{note}"
        if reframe:
            fh, fw = frame.shape
            self.view.camera.set_range(x=(0, fw * px), y=(0, fh * px), margin=0)
        self.canvas.update()

    def set_cmap(self, cmap: Any) -> None:
        self.image.cmap = cmap
