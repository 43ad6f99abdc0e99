"""OmeTiffWriter: lossless frames, self-describing OME metadata, survives failures."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile

from deepz_live.acquisition import (
    OmeTiffWriter,
    OutputLocationError,
    read_frame_metadata,
    read_run_metadata,
)

SHAPE = (24, 40)


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    # full 16-bit range: any lossy conversion would show
    return [rng.integers(0, 65535, SHAPE, dtype=np.uint16) for _ in range(n)]


def _meta(i: int) -> dict:
    return {
        "time_s": 0.05 * i,
        "z_um": 2.0 * i - 4.0,
        "exposure_ms": 10.0,
        "irradiance_W_cm2": 0.5,
        "dose_J_cm2": 0.005,
        "cumulative_dose_J_cm2": 0.005 * (i + 1),
        "frame_index": i,
    }


RUN = {
    "objective": "20x/0.75 air",
    "na": 0.75,
    "emission_nm": 525,
    "settings": {"frames": 5, "interval_ms": 50.0},
    "unit": "µm",
}


def test_zstack_roundtrip_pixels_axes_sizes_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "stack.ome.tif"
    frames = _frames(5)
    with OmeTiffWriter(
        path,
        axes="ZYX",
        dtype=np.uint16,
        frame_shape=SHAPE,
        pixel_size_um=0.325,
        z_step_um=2.0,
        run_metadata=RUN,
    ) as writer:
        for i, frame in enumerate(frames):
            writer.append(frame, _meta(i))

    data = tifffile.imread(path)
    assert data.shape == (5, *SHAPE)
    assert data.dtype == np.uint16
    np.testing.assert_array_equal(data, np.stack(frames))

    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        assert tif.series[0].axes == "ZYX"
        assert tif.pages[0].compression == 1  # uncompressed

    ome_types = pytest.importorskip("ome_types")
    ome = ome_types.from_tiff(path)  # validates against the OME schema
    pixels = ome.images[0].pixels
    assert (pixels.size_z, pixels.size_t) == (5, 1)
    assert pixels.physical_size_x == pytest.approx(0.325)
    assert pixels.physical_size_y == pytest.approx(0.325)
    assert pixels.physical_size_z == pytest.approx(2.0)
    assert [p.position_z for p in pixels.planes] == [-4.0, -2.0, 0.0, 2.0, 4.0]
    delta_t = [p.delta_t for p in pixels.planes]
    assert delta_t == pytest.approx([0, 0.05, 0.1, 0.15, 0.2])
    assert {p.exposure_time for p in pixels.planes} == {10.0}
    assert pixels.planes[0].exposure_time_unit.value == "ms"
    # run settings readable by any OME viewer as key/value pairs
    run_map = ome.structured_annotations.map_annotations[0]
    pairs = {m.k: m.value for m in run_map.value.ms}
    assert pairs["objective"] == "20x/0.75 air"
    assert pairs["unit"] == "µm"

    assert read_run_metadata(path) == RUN
    assert read_frame_metadata(path) == [_meta(i) for i in range(5)]


def test_timelapse_axes_and_no_z_size(tmp_path: Path) -> None:
    path = tmp_path / "movie.ome.tif"
    with OmeTiffWriter(
        path, axes="TYX", frame_shape=SHAPE, pixel_size_um=0.5, run_metadata={}
    ) as writer:
        for i, frame in enumerate(_frames(3)):
            writer.append(frame, {"time_s": 0.1 * i})
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "TYX"
        assert tif.series[0].shape == (3, *SHAPE)
        assert "PhysicalSizeZ" not in tif.ome_metadata
        assert 'DeltaT="0.2"' in tif.ome_metadata
        # keys not present in every frame are not invented
        assert "PositionZ" not in tif.ome_metadata


def test_exception_inside_context_keeps_every_appended_frame(tmp_path: Path) -> None:
    path = tmp_path / "partial.ome.tif"
    frames = _frames(5)
    with (
        pytest.raises(RuntimeError, match="stage fault"),
        OmeTiffWriter(
            path, frame_shape=SHAPE, pixel_size_um=0.325, run_metadata=RUN
        ) as writer,
    ):
        for i, frame in enumerate(frames):
            writer.append(frame, _meta(i))
        raise RuntimeError("stage fault")
    data = tifffile.imread(path)
    assert data.shape == (5, *SHAPE)
    np.testing.assert_array_equal(data, np.stack(frames))
    assert len(read_frame_metadata(path)) == 5
    assert read_run_metadata(path) == RUN


def test_killed_process_leaves_a_readable_file(tmp_path: Path) -> None:
    """No close() at all (os._exit): the pages and their metadata are still there."""
    path = tmp_path / "killed.ome.tif"
    script = textwrap.dedent(
        f"""
        import os
        import numpy as np
        from deepz_live.acquisition import OmeTiffWriter
        w = OmeTiffWriter({str(path)!r}, frame_shape={SHAPE}, pixel_size_um=0.325)
        for i in range(4):
            w.append(np.full({SHAPE}, i, np.uint16), {{"time_s": 0.1 * i}})
        os._exit(0)
        """
    )
    subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        cwd=Path(__file__).parents[2],
        timeout=60,
    )
    data = tifffile.imread(path)
    assert data.shape == (4, *SHAPE)
    assert list(data[:, 0, 0]) == [0, 1, 2, 3]
    assert [m["time_s"] for m in read_frame_metadata(path)] == pytest.approx(
        [0, 0.1, 0.2, 0.3]
    )


def test_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "exists.ome.tif"
    path.write_bytes(b"precious")
    with pytest.raises(OutputLocationError, match="already exists"):
        OmeTiffWriter(path, frame_shape=SHAPE, pixel_size_um=0.325)
    assert path.read_bytes() == b"precious"
    with OmeTiffWriter(
        path, frame_shape=SHAPE, pixel_size_um=0.325, overwrite=True
    ) as writer:
        writer.append(np.ones(SHAPE, np.uint16))
    assert tifffile.imread(path).shape == SHAPE


def test_rejects_frames_that_do_not_fit(tmp_path: Path) -> None:
    with OmeTiffWriter(
        tmp_path / "x.ome.tif", frame_shape=SHAPE, pixel_size_um=0.325
    ) as writer:
        with pytest.raises(ValueError, match="shape"):
            writer.append(np.zeros((SHAPE[1], SHAPE[0]), np.uint16))
        with pytest.raises(ValueError, match="losslessly"):
            writer.append(np.zeros(SHAPE, np.float32))
        writer.append(np.full(SHAPE, 7, np.uint8))  # widening is lossless
    assert tifffile.imread(tmp_path / "x.ome.tif")[0, 0] == 7


def test_closing_without_frames_leaves_no_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.ome.tif"
    writer = OmeTiffWriter(path, frame_shape=SHAPE, pixel_size_um=0.325)
    writer.close()
    writer.close()
    assert not path.exists()


# --------------------------------------------------------------------- OME-Zarr
def test_zarr_round_trip_with_scale_and_metadata(tmp_path: Path) -> None:
    zarr = pytest.importorskip("zarr")
    from deepz_live.acquisition import OmeZarrWriter, open_writer

    out = tmp_path / "stack.ome.zarr"
    frames = _frames(5)
    writer = open_writer(
        out,
        axes="ZYX",
        dtype=np.uint16,
        frame_shape=SHAPE,
        pixel_size_um=0.325,
        z_step_um=2.0,
        run_metadata=RUN,
    )
    assert isinstance(writer, OmeZarrWriter)
    with writer:
        for i, frame in enumerate(frames):
            writer.append(frame, _meta(i))
    group = zarr.open_group(str(out), mode="r")
    data = group["0"][:]
    np.testing.assert_array_equal(data, np.stack(frames))
    multiscale = group.attrs["ome"]["multiscales"][0]
    assert [a["name"] for a in multiscale["axes"]] == ["z", "y", "x"]
    scale = multiscale["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == pytest.approx([2.0, 0.325, 0.325])
    assert read_run_metadata(out)["na"] == 0.75
    assert [m["z_um"] for m in read_frame_metadata(out)] == [
        2.0 * i - 4 for i in range(5)
    ]


def test_zarr_closed_after_an_error_keeps_every_frame(tmp_path: Path) -> None:
    zarr = pytest.importorskip("zarr")
    from deepz_live.acquisition import OmeZarrWriter

    out = tmp_path / "movie.ome.zarr"
    frames = _frames(3)
    with pytest.raises(RuntimeError, match="stage fell over"):
        with OmeZarrWriter(out, frame_shape=SHAPE, pixel_size_um=0.325) as writer:
            for i, frame in enumerate(frames):
                writer.append(frame, _meta(i))
            raise RuntimeError("stage fell over")
    data = zarr.open_group(str(out), mode="r")["0"][:]
    np.testing.assert_array_equal(data, np.stack(frames))
    assert len(read_frame_metadata(out)) == 3


def test_zarr_output_refuses_to_overwrite(tmp_path: Path) -> None:
    pytest.importorskip("zarr")
    from deepz_live.acquisition import OmeZarrWriter

    out = tmp_path / "movie.ome.zarr"
    with OmeZarrWriter(out, frame_shape=SHAPE, pixel_size_um=None) as writer:
        writer.append(_frames(1)[0])
    with pytest.raises(OutputLocationError, match="already exists"):
        OmeZarrWriter(out, frame_shape=SHAPE, pixel_size_um=None)


# --------------------------------------------------------------------- crash safety
class _DiskFillsUp:
    """A file object whose ``fail_on``-th write stops half-way with ENOSPC."""

    def __init__(self, raw, fail_on: int) -> None:
        self._raw = raw
        self.fail_on = fail_on
        self.calls = 0

    def write(self, data) -> int:
        import errno

        self.calls += 1
        view = memoryview(data).cast("B")
        if self.calls == self.fail_on:
            self._raw.write(view[: view.nbytes // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._raw.write(view)

    def __getattr__(self, name: str):
        return getattr(self._raw, name)


@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize("fail_on", [1, 2, 3, 4])  # texts, pixels, IFD, the link
def test_a_write_that_fails_half_way_is_undone(
    tmp_path: Path, bigtiff: bool, fail_on: int
) -> None:
    path = tmp_path / "full.ome.tif"
    frames = _frames(4)
    writer = OmeTiffWriter(
        path, frame_shape=SHAPE, pixel_size_um=0.325, run_metadata=RUN, bigtiff=bigtiff
    )
    for i in range(3):
        writer.append(frames[i], _meta(i))
    size = path.stat().st_size
    writer._pages._fh = _DiskFillsUp(writer._pages._fh, fail_on)
    with pytest.raises(OSError, match="No space left"):
        writer.append(frames[3], _meta(3))
    assert path.stat().st_size == size  # the half-written page is gone
    assert writer.frames_written == 3
    np.testing.assert_array_equal(tifffile.imread(path), np.stack(frames[:3]))
    writer.append(frames[3], _meta(3))  # space freed: the writer goes on
    writer.close()
    np.testing.assert_array_equal(tifffile.imread(path), np.stack(frames))
    assert read_frame_metadata(path) == [_meta(i) for i in range(4)]


def test_frames_read_back_while_appending(tmp_path: Path) -> None:
    frames = _frames(3)
    writer = OmeTiffWriter(tmp_path / "a.ome.tif", frame_shape=SHAPE, pixel_size_um=1)
    writer.append(frames[0])
    np.testing.assert_array_equal(writer.read_frame(0), frames[0])
    writer.append(frames[1])
    writer.append(frames[2])
    np.testing.assert_array_equal(writer.read_frame(1), frames[1])
    with pytest.raises(IndexError, match="frame 3 is not in"):
        writer.read_frame(3)
    writer.close()  # the OME-XML goes at the end: the pages stay where they were
    np.testing.assert_array_equal(writer.read_frame(2), frames[2])


# ------------------------------------------------------------------------ volumes
def test_volume_file_round_trip(tmp_path: Path) -> None:
    from deepz_live.acquisition import open_volume_writer, read_volume_metadata

    path = tmp_path / "worm.volumes.ome.tif"
    rng = np.random.default_rng(1)
    volumes = rng.normal(size=(4, 3, *SHAPE)).astype(np.float32)
    info = {"model": "default", "model_sha256": "ab" * 32, "backend": "onnxruntime"}
    with open_volume_writer(
        path,
        planes_um=[-2, 0, 2],
        frame_shape=SHAPE,
        pixel_size_um=0.325,
        run_metadata=info,
    ) as writer:
        for t, volume in enumerate(volumes):
            writer.append(volume, {"frame_index": 2 * t, "time_s": 0.1 * t, "z_um": 9})
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "TZYX"
        np.testing.assert_array_equal(tif.asarray(), volumes)
    ome_types = pytest.importorskip("ome_types")
    pixels = ome_types.from_tiff(path).images[0].pixels  # schema-valid
    assert (pixels.size_t, pixels.size_z) == (4, 3)
    assert pixels.physical_size_z == pytest.approx(2.0)
    assert pixels.physical_size_x == pytest.approx(0.325)
    assert [p.position_z for p in pixels.planes[:3]] == [7.0, 9.0, 11.0]
    assert [p.delta_t for p in pixels.planes[3:6]] == pytest.approx([0.1] * 3)
    stored = read_volume_metadata(path)
    assert stored["run"] == {**info, "planes_um": [-2.0, 0.0, 2.0]}
    assert [v["frame_index"] for v in stored["volumes"]] == [0, 2, 4, 6]


def test_volume_file_uneven_planes_and_zarr(tmp_path: Path) -> None:
    from deepz_live.acquisition import open_volume_writer, read_volume_metadata

    tif_path = tmp_path / "v.ome.tif"
    with open_volume_writer(
        tif_path, planes_um=[-4, 0, 1], frame_shape=SHAPE, pixel_size_um=None
    ) as writer:
        writer.append(np.zeros((3, *SHAPE)))
        with pytest.raises(ValueError, match="does not match"):
            writer.append(np.zeros((2, *SHAPE)))
        with pytest.raises(ValueError, match="floating point"):
            writer.append(np.zeros((3, *SHAPE), np.uint16))
    with tifffile.TiffFile(tif_path) as tif:
        assert "PhysicalSizeZ" not in tif.ome_metadata  # uneven: no single step
    assert read_volume_metadata(tif_path)["run"]["planes_um"] == [-4.0, 0.0, 1.0]

    zarr = pytest.importorskip("zarr")
    zarr_path = tmp_path / "v.ome.zarr"
    with open_volume_writer(
        zarr_path, planes_um=[-2, 0, 2], frame_shape=SHAPE, pixel_size_um=0.5
    ) as writer:
        for t in range(2):
            writer.append(np.full((3, *SHAPE), t, np.float32), {"frame_index": t})
    group = zarr.open_group(str(zarr_path), mode="r")
    assert group["0"].shape == (2, 3, *SHAPE)
    multiscale = group.attrs["ome"]["multiscales"][0]
    assert [a["name"] for a in multiscale["axes"]] == ["t", "z", "y", "x"]
    scale = multiscale["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale[1:] == pytest.approx([2.0, 0.5, 0.5])
    stored = read_volume_metadata(zarr_path)
    assert [v["frame_index"] for v in stored["volumes"]] == [0, 1]
