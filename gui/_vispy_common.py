"""What the vispy views of `VolumeView` share: OpenGL probe, colours, parts, geometry.

`probe_opengl` says whether OpenGL can be used here (and, if not, why in one sentence);
`new_canvas`, `add_label` and `add_image` make the canvases, labels and images styled
alike in the 3-D view, the slices and the raw frame; `DisplayGeometry` is where a
volume's voxels lie in µm and how much z is stretched for display, which all views draw
from.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cmap
import numpy as np
import qtpy
from qtpy.QtGui import QGuiApplication, QOpenGLContext
from vispy import app, scene
from vispy.visuals.transforms import STTransform

if TYPE_CHECKING:
    from collections.abc import Sequence

    from vispy.scene import SceneCanvas

__all__ = [
    "BACKGROUND",
    "CURSOR_COLOR",
    "LABEL_COLOR",
    "DisplayGeometry",
    "add_image",
    "add_label",
    "new_canvas",
    "probe_opengl",
    "st_transform",
    "vispy_colormap",
]

BACKGROUND = "#101014"
LABEL_COLOR = "#e8e8e8"
CURSOR_COLOR = (1.0, 0.85, 0.2, 0.55)
"""The plane and cursor marks: in the 3-D view, the slices and across the slices."""


def probe_opengl() -> str | None:
    """None if an OpenGL context can be made here, else why not (one sentence)."""
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


def vispy_colormap(name: str) -> Any:
    """The vispy colormap of a `cmap` name (raises for unknown names)."""
    return cmap.Colormap(name).to_vispy()


def new_canvas() -> SceneCanvas:
    """A hidden canvas on the Qt binding in use, for embedding (``canvas.native``)."""
    return scene.SceneCanvas(
        app=app.use_app(qtpy.API_NAME.lower()),
        keys=None,
        bgcolor=BACKGROUND,
        show=False,
        size=(400, 400),
    )


def add_label(parent: Any, text: str) -> Any:
    """A small caption in the top-left corner of ``parent`` (a canvas scene or view).

    ``parent`` counts in pixels with y down.
    """
    return scene.visuals.Text(
        text,
        parent=parent,
        color=LABEL_COLOR,
        font_size=8,
        anchor_x="left",
        anchor_y="bottom",
        pos=(6, 4),
    )


def add_image(parent: Any, cmap: Any) -> Any:
    """An image visual (placeholder data) in ``parent``, drawn pixel by pixel."""
    return scene.visuals.Image(
        np.zeros((2, 2), np.float32),
        parent=parent,
        cmap=cmap,
        clim=(0.0, 1.0),
        texture_format="auto",
        interpolation="nearest",
    )


def st_transform(scale: Sequence[float], translate: Sequence[float]) -> Any:
    """A scale-then-translate transform (voxel or pixel indices to µm)."""
    return STTransform(scale=tuple(scale), translate=tuple(translate))


@dataclass(frozen=True)
class DisplayGeometry:
    """Where a volume's voxels lie, in µm, and the display stretch of z.

    Pixel ``i`` is centred on ``(i + ½) · pixel_size_um`` in x and y; plane ``k`` is
    centred on ``planes_um[k]``, drawn ``dz_um`` deep (the mean spacing), so the volume
    spans ``z_lo_um … z_hi_um``. Views stretched in z draw it × ``z_scale``.
    """

    shape: tuple[int, int, int]
    """(planes, y, x)"""
    pixel_size_um: float
    dz_um: float
    z_lo_um: float
    z_hi_um: float
    z_scale: float

    @classmethod
    def of(
        cls,
        shape: tuple[int, ...],
        planes_um: np.ndarray,
        pixel_size_um: float,
        dz_um: float,
        z_scale: float,
    ) -> DisplayGeometry:
        """The geometry of a volume of ``shape`` refocused to ``planes_um``."""
        n, height, width = shape
        return cls(
            shape=(n, height, width),
            pixel_size_um=pixel_size_um,
            dz_um=dz_um,
            z_lo_um=float(planes_um[0]) - dz_um / 2,
            z_hi_um=float(planes_um[-1]) + dz_um / 2,
            z_scale=z_scale,
        )

    @property
    def width_um(self) -> float:
        return self.shape[2] * self.pixel_size_um

    @property
    def height_um(self) -> float:
        return self.shape[1] * self.pixel_size_um

    @property
    def depth_um(self) -> float:
        return self.z_hi_um - self.z_lo_um
