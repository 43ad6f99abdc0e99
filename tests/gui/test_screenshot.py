"""Screenshots: the window grab with the OpenGL views rendered into it.

The OpenGL half needs a display with OpenGL (skipped on Qt's offscreen platform):
run ``QT_QPA_PLATFORM=xcb xvfb-run -a pytest tests/gui``.
"""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtGui import QImage

from deepz_live.gui import DeepzPanel, Telemetry, save_screenshot
from deepz_live.gui._qt import INSTALL_HINT, QtMissingError, require_qt


def _worm_like_volume(shift: int) -> np.ndarray:
    """Bright blobs whose focus moves through 9 planes; ``shift`` moves them in x."""
    z, y, x = np.mgrid[0:9, 0:96, 0:128].astype(np.float32)
    volume = np.full((9, 96, 128), 100.0, np.float32)
    for cy, cx, cz in ((30, 40, 2), (60, 80, 6), (48, 100, 4)):
        r2 = (y - cy) ** 2 + (x - cx - shift) ** 2
        width = 2.0 + 1.5 * np.abs(z - cz)
        volume += 800 * np.exp(-r2 / (2 * width**2)) / width
    return volume


def _image_array(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    raw = np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes())
    rows = raw.reshape(image.height(), image.bytesPerLine())
    return rows[:, : 3 * image.width()].reshape(image.height(), image.width(), 3)


@pytest.fixture
def shown_panel(qtbot):
    panel = DeepzPanel(None)
    qtbot.addWidget(panel)
    panel.resize(1200, 760)
    panel.show()
    qtbot.waitExposed(panel)
    view = panel.volume_view
    view.set_pixel_size(0.65)
    view.set_frame(_worm_like_volume(0)[4].astype(np.uint16), index=1)
    view.set_volume(_worm_like_volume(0), np.arange(-8.0, 9.0, 2.0), index=1)
    panel.telemetry.set_telemetry(Telemetry(frames_per_s=42.0, volumes_per_s=1.5))
    qtbot.wait(50)
    return panel


def test_a_screenshot_is_the_window(shown_panel, tmp_path):
    path = save_screenshot(shown_panel, tmp_path / "shots" / "panel.png")
    image = QImage(str(path))
    ratio = shown_panel.devicePixelRatioF()
    assert (image.width(), image.height()) == (
        round(shown_panel.width() * ratio),
        round(shown_panel.height() * ratio),
    )


def test_the_opengl_views_are_in_the_screenshot_and_follow_the_data(
    shown_panel, tmp_path, qtbot
):
    view = shown_panel.volume_view
    if not view.gl_available:
        pytest.skip(view.gl_error)
    canvas3d = view.canvases()[0]
    before = canvas3d.render(alpha=False)[..., :3].astype(int)
    assert before.std() > 5  # something was drawn, not a blank background

    image = _image_array(QImage(str(save_screenshot(shown_panel, tmp_path / "a.png"))))
    native = canvas3d.native
    corner = native.mapTo(shown_panel, native.rect().topLeft())
    ratio = shown_panel.devicePixelRatioF()
    x0, y0 = round(corner.x() * ratio), round(corner.y() * ratio)
    region = image[y0 : y0 + before.shape[0], x0 : x0 + before.shape[1]]
    assert np.abs(region.astype(int) - before).mean() < 2  # the render, in place

    view.set_volume(_worm_like_volume(20), index=2)
    qtbot.wait(50)
    after = canvas3d.render(alpha=False)[..., :3].astype(int)
    assert np.abs(after - before).mean() > 0.5  # the 3-D view shows the new volume
    view.set_camera_angles(60.0, 20.0)  # rotating changes the picture too
    turned = canvas3d.render(alpha=False)[..., :3].astype(int)
    assert np.abs(turned - after).mean() > 0.5


def test_a_missing_qt_package_gives_a_one_line_hint(monkeypatch):
    import deepz_live.gui._qt

    monkeypatch.setattr(
        deepz_live.gui._qt, "_REQUIRED", ("qtpy.QtCore", "no_such_qt_binding")
    )
    with pytest.raises(QtMissingError) as error:
        require_qt()
    message = str(error.value)
    assert message.startswith(INSTALL_HINT)
    assert "\n" not in message
