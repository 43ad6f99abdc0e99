"""The rotatable 3-D view: the volume on a canvas of its own, with its box and plane.

One canvas, so that rotating it (drag to rotate, wheel to zoom) redraws nothing else.
The volume is drawn in µm with z × the display stretch (`DisplayGeometry.z_scale`),
inside the outline of its bounding box, with the plane shown in XY outlined in the
cursor colour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from vispy import scene

from deepz_live.gui._vispy_common import (
    CURSOR_COLOR,
    add_label,
    new_canvas,
    st_transform,
)

if TYPE_CHECKING:
    from vispy.scene import SceneCanvas

    from deepz_live.gui._vispy_common import DisplayGeometry

__all__ = ["Volume3DView"]

_SHORT_METHOD_NAMES = {
    "mip": "MIP",
    "attenuated_mip": "attenuated MIP",
    "translucent": "translucent",
    "average": "average",
}


class Volume3DView:
    """A vispy Volume in a turntable view, rendered with ``method`` in ``cmap``."""

    def __init__(self, method: str, cmap: Any) -> None:
        self.canvas: SceneCanvas = new_canvas()
        self.view = self.canvas.central_widget.add_view()
        self.volume = scene.visuals.Volume(
            np.zeros((2, 2, 2), np.float32),
            parent=self.view.scene,
            method=method,
            cmap=cmap,
            clim=(0.0, 1.0),
            texture_format="auto",
        )
        self.box = scene.visuals.Line(
            pos=np.zeros((2, 3), np.float32),
            connect="segments",
            color=(0.6, 0.6, 0.65, 0.8),
            parent=self.view.scene,
        )
        self.plane_outline = scene.visuals.Line(
            pos=np.zeros((2, 3), np.float32),
            connect="segments",
            color=CURSOR_COLOR,
            width=2,
            parent=self.view.scene,
        )
        for outline in (self.box, self.plane_outline):
            outline.order = 10  # over the volume, never hidden in it
            outline.set_gl_state(depth_test=False, blend=True)
        self.view.camera = scene.TurntableCamera(
            fov=30, elevation=45, azimuth=-30, up="+z"
        )
        self.label = add_label(self.canvas.scene, "3-D")

    def upload(self, volume: np.ndarray, clim: tuple[float, float]) -> None:
        """Send ``volume`` (z, y, x) to the GPU: a 3-D texture, not for every redraw."""
        self.volume.set_data(volume, clim=clim)

    def draw(
        self,
        geometry: DisplayGeometry,
        plane_um: float,
        planes_um: np.ndarray,
        frame_index: int | None,
    ) -> None:
        """Place the volume, its box and the outline of the plane at ``plane_um``."""
        g, zs = geometry, geometry.z_scale
        px = g.pixel_size_um
        self.volume.transform = st_transform(
            (px, px, g.dz_um * zs), (0, 0, g.z_lo_um * zs)
        )
        w, h = g.width_um, g.height_um
        self.box.set_data(pos=_box_edges(w, h, g.z_lo_um * zs, g.z_hi_um * zs))
        self.plane_outline.set_data(pos=_rectangle(w, h, plane_um * zs))
        frame_note = "" if frame_index is None else f", frame {frame_index}"
        stretch = f", z ×{zs:g}" if zs != 1 else ""
        self.label.text = (
            f"3-D {_SHORT_METHOD_NAMES[self.volume.method]}: {g.shape[0]} planes "
            f"{planes_um[0]:+g} … {planes_um[-1]:+g} µm{stretch}{frame_note}"
        )

    def frame(self, geometry: DisplayGeometry) -> None:
        """Turn the camera's range to the whole volume."""
        g, zs = geometry, geometry.z_scale
        self.view.camera.set_range(
            x=(0, g.width_um), y=(0, g.height_um), z=(g.z_lo_um * zs, g.z_hi_um * zs)
        )

    def set_clim(self, clim: tuple[float, float]) -> None:
        self.volume.clim = clim

    def set_cmap(self, cmap: Any) -> None:
        self.volume.cmap = cmap

    def set_method(self, method: str) -> None:
        """Render with vispy Volume ``method`` (the label follows at the next draw)."""
        self.volume.method = method
        self.canvas.update()

    def camera_angles(self) -> tuple[float, float]:
        """(azimuth, elevation) in degrees."""
        camera = self.view.camera
        return (float(camera.azimuth), float(camera.elevation))

    def set_camera_angles(self, azimuth: float, elevation: float) -> None:
        camera = self.view.camera
        camera.azimuth = azimuth
        camera.elevation = elevation


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
