"""What users feed the parsers, arbitrary or damaged, gives the project's own errors.

`parse_planes` (CLI and panel text), the readers of the project's files
(`read_run_metadata`, `read_frame_metadata`, `read_volume_metadata`) and the model
file reader (`read_model_info`) either succeed or raise `PlaneError`, a `DeepzError`
or an `InferenceError`: never a library's exception, which the CLI would show as a
traceback.
"""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from deepz_live.acquisition import (
    MAX_PLANES,
    DeepzError,
    OmeTiffVolumeWriter,
    OmeTiffWriter,
    PlaneError,
    parse_planes,
    read_frame_metadata,
    read_run_metadata,
    read_volume_metadata,
)

FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
READERS = (read_run_metadata, read_frame_metadata, read_volume_metadata)


# -- parse_planes ---------------------------------------------------------------------
number_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**400), 10**400).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "-0", "", " ", "1_0", "0x10"]),
)


@FAST
@given(
    st.one_of(
        st.text(max_size=40),
        st.lists(number_text, max_size=6).map(",".join),
        st.tuples(number_text, number_text, number_text).map(":".join),
    )
)
@example("-98173695647027.0:0.0:5.4610930944310415e-295")  # overflowed: floor(inf)
@example("-1e308:1e308:1")
def test_parse_planes_gives_planes_or_a_plane_error(text: str) -> None:
    try:
        planes = parse_planes(text)
    except PlaneError as error:
        assert str(error)
        assert "\n" not in str(error)
        return
    assert 1 <= len(planes) <= MAX_PLANES
    assert all(isinstance(p, float) and np.isfinite(p) for p in planes)


# -- the readers of the project's files ----------------------------------------------
def _raw_file(folder: Path, frames: int, close: bool) -> Path:
    path = folder / "raw.ome.tif"
    writer = OmeTiffWriter(
        path,
        frame_shape=(5, 7),
        pixel_size_um=0.65,
        run_metadata={"kind": "timelapse", "settings": {"frames": frames}},
        bigtiff=frames % 2 == 0,
    )
    for k in range(frames):
        writer.append(np.full((5, 7), k, np.uint16), {"time_s": 0.5 * k, "z_um": 1.0})
    if close:
        writer.close()
    else:
        writer._pages.close()  # a killed process: no OME-XML
    return path


def _volume_file(folder: Path, volumes: int) -> Path:
    path = folder / "raw.volumes.ome.tif"
    with OmeTiffVolumeWriter(
        path,
        planes_um=(-1.0, 1.0),
        frame_shape=(5, 7),
        pixel_size_um=0.65,
        run_metadata={"model": "tiny"},
    ) as writer:
        for k in range(volumes):
            writer.append(np.full((2, 5, 7), k, np.float32), {"frame_index": k})
    return path


def _result_or_our_error(read: object, path: Path) -> None:
    assert callable(read)
    try:
        read(path)
    except DeepzError as error:
        assert str(error)


def _each_reader_gives_a_result_or_our_error(path: Path) -> None:
    for read in READERS:
        _result_or_our_error(read, path)


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("valid")
    files = {}
    for name, make in {
        "closed": lambda f: _raw_file(f, 3, close=True),
        "closed_classic": lambda f: _raw_file(f, 1, close=True),
        "killed": lambda f: _raw_file(f, 4, close=False),
        "volumes": lambda f: _volume_file(f, 2),
    }.items():
        sub = folder / name
        sub.mkdir()
        files[name] = make(sub).read_bytes()
    return files


@FAST
@given(data=st.binary(max_size=600))
def test_readers_on_arbitrary_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "any.ome.tif"
        path.write_bytes(data)
        _each_reader_gives_a_result_or_our_error(path)


@FAST
@given(data=st.binary(max_size=200))
def test_readers_on_a_tiff_header_and_arbitrary_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for header in (b"II*\x00" + struct.pack("<I", 8), b"II+\x00\x08\x00\x00\x00"):
            path = Path(folder) / "any.ome.tif"
            path.write_bytes(header + data)
            _each_reader_gives_a_result_or_our_error(path)


@FAST
@given(
    name=st.sampled_from(["closed", "closed_classic", "killed", "volumes"]),
    cut=st.floats(0, 1),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=3),
)
def test_readers_on_truncated_or_damaged_files(
    valid_files: dict[str, bytes],
    name: str,
    cut: float,
    flips: list[tuple[float, int]],
) -> None:
    data = bytearray(valid_files[name][: int(len(valid_files[name]) * cut)])
    for where, value in flips:
        if data:
            data[min(int(where * len(data)), len(data) - 1)] = value
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "damaged.ome.tif"
        path.write_bytes(bytes(data))
        _each_reader_gives_a_result_or_our_error(path)


def test_readers_on_a_missing_file(tmp_path: Path) -> None:
    for read in READERS:
        with pytest.raises(DeepzError, match="Cannot read the metadata"):
            read(tmp_path / "missing.ome.tif")


@FAST
@given(
    description=st.one_of(
        st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=30),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=5),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=10), inner, max_size=3)
            ),
            max_leaves=8,
        ).map(json.dumps),
    )
)
def test_readers_on_foreign_page_descriptions(description: str) -> None:
    """Another program's TIFF, or JSON that is not the writers'."""
    import tifffile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "foreign.tif"
        tifffile.imwrite(
            path,
            np.zeros((2, 3, 4), np.uint16),
            description=description,
            metadata=None,
        )
        _each_reader_gives_a_result_or_our_error(path)


# -- the model file reader -----------------------------------------------------------
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_model_bytes(tiny_model: Path) -> bytes:
    """The shared tiny model file's bytes (tests/conftest.py)."""
    return tiny_model.read_bytes()


def _read_model_info_or_our_error(data: bytes) -> None:
    from deepz_live.inference import InferenceError, read_model_info

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        path.write_bytes(data)
        try:
            read_model_info(path)
        except InferenceError as error:
            assert str(error)


@FAST
@given(data=st.binary(max_size=400))
def test_read_model_info_on_arbitrary_bytes(data: bytes) -> None:
    _read_model_info_or_our_error(data)


@FAST
@given(cut=st.floats(0, 1), flip=st.tuples(st.floats(0, 1), st.integers(0, 255)))
def test_read_model_info_on_truncated_or_damaged_files(
    tiny_model_bytes: bytes, cut: float, flip: tuple[float, int]
) -> None:
    data = bytearray(tiny_model_bytes[: int(len(tiny_model_bytes) * cut)])
    if data:
        data[min(int(flip[0] * len(data)), len(data) - 1)] = flip[1]
    _read_model_info_or_our_error(bytes(data))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@FAST
@given(
    fields=st.dictionaries(
        st.sampled_from(
            [
                "name",
                "generator",
                "normalization",
                "pixel_size_um",
                "dz_range_um",
                "dpm_scale_um",
                "format_version",
                "other",
            ]
        ),
        json_values,
        max_size=8,
    )
)
def test_read_model_info_on_arbitrary_model_metadata(
    tiny_model_bytes: bytes, fields: dict[str, object]
) -> None:
    """A valid safetensors header whose deepz-live JSON is anything at all."""
    size = struct.unpack("<Q", tiny_model_bytes[:8])[0]
    header = json.loads(tiny_model_bytes[8 : 8 + size])
    stored = json.loads(header["__metadata__"]["deepz-live"])
    stored.update(fields)
    header["__metadata__"]["deepz-live"] = json.dumps(stored)
    text = json.dumps(header).encode()
    _read_model_info_or_our_error(
        struct.pack("<Q", len(text)) + text + tiny_model_bytes[8 + size :]
    )
