"""Reading z-stacks: deepz-live files, OME-TIFF, ImageJ, plain TIFF, real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from deepz_live.inference import StackFormatError, ZStack, read_stacks

REAL = Path("/work/shared/data/real")


def _planes(*shape: int) -> np.ndarray:
    """uint16 data whose every plane has a distinct level, plus texture."""
    rng = np.random.default_rng(1)
    data = rng.integers(0, 50, size=shape).astype(np.uint16)
    z_axis = len(shape) - 3
    levels = 1000 * (1 + np.arange(shape[z_axis]))
    levels = levels.reshape([-1 if i == z_axis else 1 for i in range(len(shape))])
    return (data + levels).astype(np.uint16)


def _imagej(path: Path, data: np.ndarray, axes: str, **meta: object) -> Path:
    resolution = meta.pop("resolution", None)
    tifffile.imwrite(
        path, data, imagej=True, metadata={"axes": axes, **meta}, resolution=resolution
    )
    return path


# --- deepz-live's own files -----------------------------------------------------------


def test_deepz_file_gives_per_plane_z_optics_and_offset(tmp_path: Path) -> None:
    from deepz_live.acquisition import (
        OmeTiffWriter,  # the writer that `deepz zstack` uses
    )

    data = _planes(3, 8, 9)
    z_recorded = [7.25, 6.75, 6.25]  # a top-down stack
    run = {
        "kind": "zstack",
        "camera": "Cam",
        "devices": {
            "Optics": {"NA": "0.75", "EmissionWavelength_nm": "525.0"},
            "Cam": {"Offset": "100.0", "Binning": "1"},
        },
    }
    path = tmp_path / "run.ome.tif"
    with OmeTiffWriter(
        path,
        axes="ZYX",
        frame_shape=(8, 9),
        pixel_size_um=0.65,
        z_step_um=0.5,
        run_metadata=run,
    ) as writer:
        for plane, z in zip(data, z_recorded, strict=True):
            writer.append(plane, {"z_um": z, "time_s": 0.0})

    (stack,) = read_stacks(path)
    # stored bottom-up: increasing z, the planes reordered with it
    np.testing.assert_array_equal(stack.z_um, [6.25, 6.75, 7.25])
    np.testing.assert_array_equal(stack.data, data[::-1].astype(np.float32))
    assert stack.data.dtype == np.float32
    assert stack.voxel_um == pytest.approx((0.5, 0.65, 0.65))
    assert stack.na == pytest.approx(0.75)
    assert stack.wavelength_um == pytest.approx(0.525)
    assert stack.camera_offset == pytest.approx(100.0)
    assert stack.source == str(path)


def test_deepz_file_z_from_frames_not_from_step(tmp_path: Path) -> None:
    """Uneven recorded positions win over the nominal PhysicalSizeZ."""
    from deepz_live.acquisition import OmeTiffWriter

    data = _planes(4, 6, 6)
    z_recorded = [0.0, 1.0, 2.5, 3.0]
    path = tmp_path / "uneven.ome.tif"
    with OmeTiffWriter(
        path, axes="ZYX", frame_shape=(6, 6), pixel_size_um=1.0, z_step_um=1.0
    ) as writer:
        for plane, z in zip(data, z_recorded, strict=True):
            writer.append(plane, {"z_um": z})
    (stack,) = read_stacks(path)
    np.testing.assert_array_equal(stack.z_um, z_recorded)
    assert stack.camera_offset is None and stack.na is None


# --- generic OME-TIFF ---------------------------------------------------------------


def test_ome_czyx_channel_units_and_names(tmp_path: Path) -> None:
    data = _planes(2, 4, 5, 6)  # CZYX
    path = tmp_path / "two.ome.tif"
    tifffile.imwrite(
        path,
        data,
        metadata={
            "axes": "CZYX",
            "PhysicalSizeX": 130.0,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 130.0,
            "PhysicalSizeYUnit": "nm",
            "PhysicalSizeZ": 0.3,
            "Channel": {"Name": ["confocal", "widefield"]},
        },
    )
    with pytest.raises(StackFormatError, match=r"2 channels.*confocal.*widefield"):
        read_stacks(path)
    (stack,) = read_stacks(path, channel=1)
    np.testing.assert_array_equal(stack.data, data[1])
    assert stack.voxel_um == pytest.approx((0.3, 0.13, 0.13))
    assert stack.source == f"{path}[c=1]"
    with pytest.raises(StackFormatError, match="channel 2 is out of range"):
        read_stacks(path, channel=2)


def test_ome_plane_positions(tmp_path: Path) -> None:
    path = tmp_path / "planes.ome.tif"
    z = [10.0, 10.2, 10.6]
    tifffile.imwrite(
        path,
        _planes(3, 5, 5),
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 0.1,
            "PhysicalSizeY": 0.2,
            "PhysicalSizeZ": 0.2,
            "Plane": {"PositionZ": z},
        },
    )
    (stack,) = read_stacks(path)
    np.testing.assert_allclose(stack.z_um, z)
    assert stack.pixel_um == pytest.approx((0.2, 0.1))


def test_ome_without_physical_size_needs_voxel(tmp_path: Path) -> None:
    path = tmp_path / "bare.ome.tif"
    tifffile.imwrite(path, _planes(3, 5, 5), metadata={"axes": "ZYX"})
    with pytest.raises(StackFormatError, match=r"voxel_um is required.*--voxel-um"):
        read_stacks(path)
    (stack,) = read_stacks(path, voxel_um=(0.5, 0.1, 0.1))
    np.testing.assert_allclose(stack.z_um, [0.0, 0.5, 1.0])


# --- ImageJ ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "um_per_unit"),
    [("micron", 1.0), ("um", 1.0), ("\\u00B5m", 1.0), ("µm", 1.0), ("nm", 1e-3)],
)
def test_imagej_units(tmp_path: Path, unit: str, um_per_unit: float) -> None:
    path = tmp_path / "ij.tif"
    data = _planes(5, 6, 7)
    if unit.isascii():
        _imagej(path, data, "ZYX", unit=unit, spacing=0.4, resolution=(1 / 0.2,) * 2)
    else:  # tifffile writes ASCII descriptions; put the µ in by hand, as some do
        _imagej(path, data, "ZYX", unit="um", spacing=0.4, resolution=(1 / 0.2,) * 2)
        with tifffile.TiffFile(path) as tif:
            description = tif.pages[0].description.replace("unit=um", "unit=µm")
        tifffile.tiffcomment(path, description.encode("utf-8"))
    (stack,) = read_stacks(path)
    assert stack.voxel_um == pytest.approx(
        (0.4 * um_per_unit, 0.2 * um_per_unit, 0.2 * um_per_unit)
    )
    np.testing.assert_array_equal(stack.data, data)


def test_imagej_without_spacing_means_one_unit(tmp_path: Path) -> None:
    """ImageJ leaves out spacing=1; Fiji then shows a voxel depth of 1 unit."""
    path = _imagej(
        tmp_path / "ij.tif",
        _planes(3, 4, 4),
        "ZYX",
        unit="micron",
        resolution=(2.0, 2.0),
    )
    (stack,) = read_stacks(path)
    assert stack.voxel_um == pytest.approx((1.0, 0.5, 0.5))


def test_imagej_uncalibrated_needs_voxel(tmp_path: Path) -> None:
    path = _imagej(tmp_path / "ij.tif", _planes(3, 4, 4), "ZYX")
    with pytest.raises(StackFormatError) as info:
        read_stacks(path)
    message = str(info.value)
    assert str(path) in message and "--voxel-um Z,Y,X" in message
    assert "voxel_um" in message


def test_imagej_tzyx_one_stack_per_time_point(tmp_path: Path) -> None:
    data = _planes(3, 4, 5, 6)  # TZYX
    data[1] += 7  # tell the time points apart
    path = _imagej(
        tmp_path / "t.tif",
        data,
        "TZYX",
        unit="micron",
        spacing=0.5,
        resolution=(4.0, 4.0),
    )
    stacks = read_stacks(path)
    assert [s.source for s in stacks] == [f"{path}[t={t}]" for t in range(3)]
    for t, stack in enumerate(stacks):
        np.testing.assert_array_equal(stack.data, data[t])
        assert stack.voxel_um == pytest.approx((0.5, 0.25, 0.25))


def test_imagej_zcyx_channel(tmp_path: Path) -> None:
    data = np.ascontiguousarray(_planes(2, 4, 5, 6).transpose(1, 0, 2, 3))  # ZCYX
    path = _imagej(
        tmp_path / "zc.tif",
        data,
        "ZCYX",
        unit="micron",
        spacing=0.5,
        resolution=(2.0, 2.0),
    )
    with pytest.raises(StackFormatError, match="has 2 channels"):
        read_stacks(path)
    (stack,) = read_stacks(path, channel=1)
    np.testing.assert_array_equal(stack.data, data[:, 1])
    with pytest.raises(StackFormatError, match="out of range"):
        read_stacks(path, channel=-1)


def test_voxel_override_wins(tmp_path: Path) -> None:
    path = _imagej(
        tmp_path / "ij.tif",
        _planes(3, 4, 4),
        "ZYX",
        unit="micron",
        spacing=2.0,
        resolution=(1.0, 1.0),
    )
    (stack,) = read_stacks(path, voxel_um=(0.25, 0.1, 0.12))
    assert stack.voxel_um == pytest.approx((0.25, 0.1, 0.12))
    np.testing.assert_allclose(stack.z_um, [0.0, 0.25, 0.5])


def test_plain_multipage_tiff(tmp_path: Path) -> None:
    path = tmp_path / "plain.tif"
    data = _planes(6, 5, 4)
    with tifffile.TiffWriter(path) as tif:
        for plane in data:
            tif.write(plane, metadata=None)
    with pytest.raises(StackFormatError, match="--voxel-um"):
        read_stacks(path)
    (stack,) = read_stacks(path, voxel_um=[0.3, 0.13, 0.13])
    np.testing.assert_array_equal(stack.data, data)
    np.testing.assert_allclose(stack.z_um, 0.3 * np.arange(6))


# --- errors ---------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StackFormatError, match="no such file"):
        read_stacks(tmp_path / "nope.tif")


def test_not_a_tiff(tmp_path: Path) -> None:
    path = tmp_path / "notes.tif"
    path.write_text("not an image")
    with pytest.raises(StackFormatError, match=r"notes\.tif is not a readable TIFF"):
        read_stacks(path)


def test_two_d_image(tmp_path: Path) -> None:
    path = tmp_path / "flat.tif"
    tifffile.imwrite(path, np.zeros((5, 6), np.uint16))
    with pytest.raises(StackFormatError, match=r"single 2-D image \(5×6\)"):
        read_stacks(path, voxel_um=(1, 1, 1))


def test_single_plane(tmp_path: Path) -> None:
    path = tmp_path / "one.ome.tif"
    tifffile.imwrite(path, np.zeros((3, 1, 5, 6), np.uint16), metadata={"axes": "TZYX"})
    with pytest.raises(StackFormatError, match="1 plane along z and 3 time points"):
        read_stacks(path, voxel_um=(1, 1, 1))


def test_time_lapse_without_z(tmp_path: Path) -> None:
    path = _imagej(tmp_path / "movie.tif", np.zeros((4, 5, 6), np.uint16), "TYX")
    with pytest.raises(StackFormatError, match=r"time-lapse.*relabel"):
        read_stacks(path, voxel_um=(1, 1, 1))


def test_rgb_is_unknown_axes(tmp_path: Path) -> None:
    path = tmp_path / "rgb.ome.tif"
    tifffile.imwrite(
        path,
        np.zeros((4, 5, 6, 3), np.uint8),
        photometric="rgb",
        metadata={"axes": "ZYXS"},
    )
    with pytest.raises(StackFormatError, match="unknown axes 'ZYXS'"):
        read_stacks(path, voxel_um=(1, 1, 1))


@pytest.mark.parametrize("voxel", [(1, 1), (0, 1, 1), ("a", 1, 1)])
def test_bad_voxel_override(tmp_path: Path, voxel: tuple) -> None:
    with pytest.raises(StackFormatError, match="three"):
        read_stacks(tmp_path / "any.tif", voxel_um=voxel)


# --- ZStack ---------------------------------------------------------------------------


def test_fingerprint_tracks_data_and_geometry() -> None:
    data = _planes(3, 4, 4).astype(np.float32)
    a = ZStack(data, np.array([0.0, 1.0, 2.0]), (0.5, 0.5), "a")
    same = ZStack(data.copy(), [0.0, 1.0, 2.0], (0.5, 0.5), "elsewhere")
    assert a.fingerprint() == same.fingerprint()
    changed = data.copy()
    changed[1, 2, 3] += 1
    assert ZStack(changed, a.z_um, (0.5, 0.5), "a").fingerprint() != a.fingerprint()
    assert ZStack(data, [0, 1, 2.5], (0.5, 0.5), "a").fingerprint() != a.fingerprint()
    assert ZStack(data, a.z_um, (0.5, 0.4), "a").fingerprint() != a.fingerprint()


def test_zstack_validates() -> None:
    data = np.zeros((3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="strictly increasing"):
        ZStack(data, [0.0, 2.0, 1.0], (1.0, 1.0), "x")
    with pytest.raises(ValueError, match="at least 2 planes"):
        ZStack(data[:1], [0.0], (1.0, 1.0), "x")
    with pytest.raises(ValueError, match="z_um has 2 values"):
        ZStack(data, [0.0, 1.0], (1.0, 1.0), "x")
    with pytest.raises(ValueError, match="pixel_um"):
        ZStack(data, [0.0, 1.0, 2.0], (0.0, 1.0), "x")


# --- the shared real data --------------------------------------------------------

needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="shared real data not here")


@needs_real
def test_real_neubias_pair() -> None:
    path = REAL / "neubias_nucleus_confocal_widefield_zcyx.tif"
    with pytest.raises(StackFormatError, match="2 channels"):
        read_stacks(path)
    (widefield,) = read_stacks(path, channel=1)
    assert widefield.shape == (45, 130, 133)
    assert widefield.voxel_um == pytest.approx((0.4994, 0.5119, 0.5119), abs=1e-4)
    # camera offset ≈ 608 counts (PROVENANCE.md): nothing below it
    assert 600 <= widefield.data.min() <= 615
    (confocal,) = read_stacks(path, channel=0)
    assert confocal.voxel_um == widefield.voxel_um


@needs_real
def test_real_bead_needs_voxel() -> None:
    path = REAL / "bead_widefield_na0.85_520nm_z300nm_xy130nm.tif"
    with pytest.raises(StackFormatError, match="--voxel-um Z,Y,X"):
        read_stacks(path)
    (bead,) = read_stacks(path, voxel_um=(0.3, 0.13, 0.13))
    assert bead.shape == (25, 256, 256)
    assert bead.data.min() == 135  # the offset PROVENANCE.md gives


@needs_real
def test_real_confocal_beads_imagej_calibration() -> None:
    (beads,) = read_stacks(REAL / "beads_confocal_z125nm_xy22.5nm.tif")
    assert beads.shape == (41, 150, 150)
    assert beads.voxel_um == pytest.approx((0.125, 0.0225, 0.0225), rel=1e-3)


def test_crop_columns_keeps_z_and_names_the_band() -> None:
    data = np.arange(3 * 4 * 10, dtype=np.float32).reshape(3, 4, 10)
    stack = ZStack(data=data, z_um=np.arange(3.0), pixel_um=(0.5, 0.5), source="f.tif")
    band = stack.crop_columns(6, 10)
    np.testing.assert_array_equal(band.data, data[:, :, 6:10])
    np.testing.assert_array_equal(band.z_um, stack.z_um)
    assert band.source == "f.tif[x=6:10]"
    assert stack.crop_columns(0, 10) is stack
    with pytest.raises(ValueError, match="outside"):
        stack.crop_columns(8, 12)
