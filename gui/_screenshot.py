"""Screenshots of the panel that include what OpenGL drew.

``QWidget.grab`` often returns black (or stale) pixels for OpenGL widgets, so each vispy
canvas is rendered offscreen (`SceneCanvas.render`) and painted over its place in the
grabbed window.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import QPoint, QRect
from qtpy.QtGui import QImage, QPainter
from qtpy.QtWidgets import QApplication, QWidget

if TYPE_CHECKING:
    from vispy.scene import SceneCanvas

__all__ = ["grab_with_canvases", "save_screenshot"]


def _canvases_in(widget: QWidget) -> list[SceneCanvas]:
    canvases: list[SceneCanvas] = []
    for child in [widget, *widget.findChildren(QWidget)]:
        canvases.extend(getattr(child, "canvases", lambda: [])())
    return canvases


def grab_with_canvases(widget: QWidget) -> QImage:
    """An image of ``widget`` with every vispy canvas inside it rendered in place."""
    app = QApplication.instance()
    if app is not None:
        app.processEvents()
    # Render first: SceneCanvas.render draws into its own framebuffer, opaque RGB
    # (with alpha, a translucent volume would let the grabbed pixels show through).
    renders = []
    for canvas in _canvases_in(widget):
        native = canvas.native
        if native.isVisible():
            rgb = np.ascontiguousarray(canvas.render(alpha=False)[..., :3])
            renders.append((native, rgb))
    if app is not None:
        app.processEvents()
    pixmap = widget.grab()
    image = pixmap.toImage().convertToFormat(QImage.Format.Format_RGB888)
    ratio = pixmap.devicePixelRatio()
    painter = QPainter(image)
    try:
        for native, rgb in renders:
            height, width = rgb.shape[:2]
            rendered = QImage(
                rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888
            )
            corner = native.mapTo(widget, QPoint(0, 0))
            target = QRect(
                round(corner.x() * ratio),
                round(corner.y() * ratio),
                round(native.width() * ratio),
                round(native.height() * ratio),
            )
            painter.drawImage(target, rendered)
    finally:
        painter.end()
    return image


def save_screenshot(widget: QWidget, path: str | Path) -> Path:
    """Save a PNG of ``widget`` (OpenGL views included) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = grab_with_canvases(widget)
    # PySide6 takes the format as str; its stubs say bytes
    if not image.save(str(path), "PNG"):  # type: ignore[call-overload]
        raise OSError(f"could not write the screenshot to {path}")
    return path
