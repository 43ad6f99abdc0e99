"""VolumeView: the data it shows, the plane slider in µm, contrast and colormap."""

from __future__ import annotations

import numpy as np
import pytest

from deepz_live.gui import VolumeView, auto_contrast_limits
from deepz_live.gui._um_axes import axis_ticks

PLANES = [-8.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0]


def _volume(seed: int, shape=(9, 24, 32)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32) * 1000


@pytest.fixture
def view(qtbot):
    widget = VolumeView()
    qtbot.addWidget(widget)
    return widget


def test_without_opengl_the_view_says_why_and_keeps_the_data(view):
    if view.gl_available:
        pytest.skip("OpenGL is available here (not Qt's offscreen platform)")
    assert "3-D view unavailable" in view.gl_error
    assert view.canvases() == []
    view.set_volume(_volume(0), PLANES)
    assert view.volume is not None


def test_a_new_volume_replaces_the_slices_shown(view):
    first, second = _volume(1), _volume(2)
    view.set_volume(first, PLANES, index=7)
    view.set_plane_um(2.0)
    y, x = view.cursor_yx
    before = {name: image.copy() for name, image in view.slices().items()}
    np.testing.assert_array_equal(before["xy"], first[5])
    np.testing.assert_array_equal(before["xz"], first[:, y, :])
    np.testing.assert_array_equal(before["yz"], first[:, :, x].T)

    view.set_volume(second, index=8)  # same planes: positions may be left out
    after = view.slices()
    assert view.volume_index == 8
    assert view.plane_um == 2.0  # the chosen plane stays
    np.testing.assert_array_equal(after["xy"], second[5])
    np.testing.assert_array_equal(after["xz"], second[:, y, :])
    for name in ("xy", "xz", "yz"):
        assert not np.array_equal(before[name], after[name]), name


def test_the_plane_slider_is_in_micrometres(view, qtbot):
    view.set_volume(_volume(3), PLANES)
    assert view.plane_slider.minimum() == -8.0
    assert view.plane_slider.maximum() == 8.0
    with qtbot.waitSignal(view.plane_changed) as signal:
        view.plane_slider.setValue(3.1)  # nearest plane: +4 µm, index 6
    assert signal.args == [6]
    assert view.plane_index == 6
    assert view.plane_um == 4.0
    assert view.plane_slider.value() == pytest.approx(4.0)  # the handle snaps
    np.testing.assert_array_equal(view.slices()["xy"], view.volume[6])
    view.plane_slider.setValue(-7.2)
    assert view.plane_index == 0
    assert view.set_plane_um(100.0) == 8  # clamped to the last plane


def test_uneven_planes_map_to_the_nearest(view):
    planes = [-10.0, -3.0, 0.0, 1.0, 5.0]
    view.set_volume(_volume(4, (5, 8, 8)), planes)
    assert view.set_plane_um(0.6) == 3
    assert view.set_plane_um(-6.0) == 1
    assert view.voxel_size_um[0] == pytest.approx(15.0 / 4)


def test_the_cursor_chooses_the_xz_and_yz_slices(view):
    volume = _volume(5)
    view.set_volume(volume, PLANES)
    view.set_cursor(3, 20)
    slices = view.slices()
    np.testing.assert_array_equal(slices["xz"], volume[:, 3, :])
    np.testing.assert_array_equal(slices["yz"], volume[:, :, 20].T)
    view.set_cursor(-5, 999)  # clamped into the volume
    assert view.cursor_yx == (0, 31)


def test_contrast_is_automatic_until_set(view):
    volume = _volume(6)
    view.set_volume(volume, PLANES)
    low, high = np.percentile(volume, (0.5, 99.8))
    assert view.clim == pytest.approx((low, high), rel=0.02)
    view.set_clim(10.0, 20.0)
    assert not view.auto_contrast
    assert not view.auto_contrast_box.isChecked()
    view.set_volume(_volume(7), PLANES)
    assert view.clim == (10.0, 20.0)  # manual limits survive new volumes
    view.clim_max_box.setValue(500.0)  # typing in the box sets them too
    assert view.clim == (10.0, 500.0)
    view.auto_contrast_box.setChecked(True)
    assert view.clim != (10.0, 500.0)
    with pytest.raises(ValueError, match="low < high"):
        view.set_clim(5.0, 5.0)


def test_colormap_and_render_method(view):
    view.colormap_box.setCurrentText("magma")
    assert view.colormap == "magma"
    view.set_colormap("cyan")  # any cmap name
    assert view.colormap_box.currentText() == "cyan"
    with pytest.raises(Exception, match="nonsense"):
        view.set_colormap("nonsense")
    view.method_box.setCurrentText("translucent")
    assert view.render_method == "translucent"
    with pytest.raises(ValueError):
        view.set_render_method("xray")


def test_z_is_stretched_for_display_and_says_so(view):
    # 512 px of 0.325 µm (166 µm) but 9 planes of 2 µm (18 µm): auto stretches z
    view.set_pixel_size(0.325)
    view.set_volume(np.zeros((9, 512, 512), np.float32), PLANES)
    assert view.z_scale == 4.0
    view.set_z_scale(1)
    assert view.z_scale == 1.0
    assert view.z_scale_box.currentText() == "1"
    view.z_scale_box.setCurrentText("auto")
    assert view.z_scale == 4.0


def test_the_xz_and_yz_axes_read_true_micrometres(view, qtbot):
    if not view.gl_available:
        pytest.skip(view.gl_error)
    view.resize(900, 700)
    view.show()
    qtbot.waitExposed(view)
    view.set_pixel_size(0.5)
    view.set_volume(_volume(8), PLANES)  # x 0…16 µm, y 0…12 µm, z −9…+9 µm
    view.set_z_scale(4)
    slices = view._scenes.slices
    canvas = slices.canvas
    assert view.canvases()[1] is canvas
    canvas.render()
    axes = slices.axes
    expected = {  # axis: (view, orientation, title, visible range in µm)
        "xz_x": ("xz", "bottom", "x (µm)", (0.0, 16.0)),
        "xz_z": ("xz", "left", "z (µm)", (-9.0, 9.0)),
        "yz_z": ("yz", "bottom", "z (µm)", (-9.0, 9.0)),
        "yz_y": ("yz", "right", "y (µm)", (0.0, 12.0)),
    }
    assert set(axes) == set(expected)
    for name, (view_name, orientation, title, extent) in expected.items():
        axis = axes[name]
        assert axis.orientation == orientation, name
        assert axis.axis.axis_label == title, name
        assert sorted(axis.axis.domain) == pytest.approx(extent, abs=0.02), name
        # the axis runs along its view's edge: both ends on the view's border
        ends = axis.node_transform(slices.views[view_name]).map(axis.axis.pos)
        along = 0 if orientation == "bottom" else 1
        view_length = slices.views[view_name].size[along]
        assert sorted(ends[:, along]) == pytest.approx([0, view_length], abs=0.5)

    def px_per_um(name):
        length = np.linalg.norm(np.subtract(*axes[name].axis.pos))
        low, high = axes[name].axis.domain
        return length / abs(high - low)

    # z drawn 4× as long per µm as x and y, its ticks still in µm
    assert px_per_um("xz_z") == pytest.approx(4 * px_per_um("xz_x"), rel=0.01)
    assert px_per_um("yz_z") == pytest.approx(4 * px_per_um("yz_y"), rel=0.01)
    assert px_per_um("xz_x") == pytest.approx(px_per_um("yz_y"), rel=0.01)

    # linked: zooming a view in by 2 halves the range of its own axes only
    spans = {name: np.ptp(axis.axis.domain) for name, axis in axes.items()}
    for zoomed in ("xz", "yz"):
        slices.views[zoomed].camera.zoom(0.5)
        canvas.render()
        for name, axis in axes.items():
            factor = 0.5 if name.startswith(zoomed) else 1.0
            assert np.ptp(axis.axis.domain) == pytest.approx(
                factor * spans[name], rel=0.01
            ), (zoomed, name)
        slices.views[zoomed].camera.zoom(2.0)

    view.set_z_scale(1)  # unstretched: same µm, now 1:1
    canvas.render()
    assert sorted(axes["xz_z"].axis.domain) == pytest.approx((-9.0, 9.0), abs=0.02)
    assert px_per_um("xz_z") == pytest.approx(px_per_um("xz_x"), rel=0.01)

    # double-clicking XY at (x, y) = (10, 5) µm still moves the cursor there
    xy = slices.views["xy"]
    click = xy.scene.node_transform(canvas.scene).map([10.2, 5.2])[:2]
    canvas.events.mouse_double_click(pos=click, button=1)
    assert view.cursor_yx == (10, 20)


def test_axis_ticks_are_round_and_readable_on_a_short_axis():
    major, minor = axis_ticks(9.0, -9.0, 120.0)  # a ±9 µm z axis, 120 px long
    np.testing.assert_array_equal(major, [-5.0, 0.0, 5.0])
    np.testing.assert_array_equal(
        minor, [-9, -8, -7, -6, -4, -3, -2, -1, 1, 2, 3, 4, 6, 7, 8, 9]
    )
    major, _ = axis_ticks(0.0, 166.4, 600.0)
    np.testing.assert_array_equal(major, np.arange(0.0, 161.0, 10.0))
    major, _ = axis_ticks(0.0, 0.5, 200.0)
    np.testing.assert_allclose(major, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert f"{axis_ticks(-0.5, 3.0, 200.0)[0][0]:g}" == "0"  # not "-0"


def test_the_raw_frame_is_kept_with_its_own_contrast(view):
    frame = np.arange(24 * 32, dtype=np.uint16).reshape(24, 32)
    view.set_frame(frame, index=3)
    assert view.frame is frame
    assert view.frame_index == 3
    assert view.frame_clim[0] < view.frame_clim[1] <= frame.max()


def test_bad_input_is_refused(view):
    with pytest.raises(ValueError, match="planes, y, x"):
        view.set_volume(np.zeros((4, 4)), [0.0])
    with pytest.raises(ValueError, match="3 plane positions"):
        view.set_volume(np.zeros((2, 4, 4)), [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="increase"):
        view.set_volume(np.zeros((2, 4, 4)), [1.0, 0.0])
    with pytest.raises(ValueError):
        view.set_pixel_size(0)


def test_auto_contrast_limits_of_a_large_array_match_the_full_percentiles():
    data = np.random.default_rng(0).gamma(2.0, 100.0, (21, 512, 512)).astype(np.float32)
    exact = np.percentile(data, (0.5, 99.8))
    assert auto_contrast_limits(data) == pytest.approx(tuple(exact), rel=0.03)
    assert auto_contrast_limits(np.full((4, 4), 7.0)) == (7.0, 8.0)
    assert auto_contrast_limits(np.full((4, 4), np.nan)) == (0.0, 1.0)
