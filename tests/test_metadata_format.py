"""deepz-live's file format: one definition, read alike by acquisition and inference."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

from deepz_live import _metadata_format as fmt
from deepz_live.acquisition import OmeTiffWriter, read_frame_metadata
from deepz_live.inference import read_stacks

if TYPE_CHECKING:
    from pathlib import Path


def _ome(schema: str, *annotations: tuple[str, str | None]) -> str:
    """A minimal OME-XML document in OME schema ``schema`` with comment annotations."""
    uri = f"http://www.openmicroscopy.org/Schemas/OME/{schema}"
    parts = "".join(
        f'<CommentAnnotation ID="Annotation:{k}" Namespace="{ns}">'
        + ("" if value is None else f"<Value>{value}</Value>")
        + "</CommentAnnotation>"
        for k, (ns, value) in enumerate(annotations)
    )
    body = f"<StructuredAnnotations>{parts}</StructuredAnnotations>"
    return f'<OME xmlns="{uri}">{body}</OME>'


@pytest.mark.parametrize("schema", ["2016-06", "2013-06"])
def test_comment_annotations_are_found_by_namespace_in_any_schema(schema: str) -> None:
    ome = _ome(
        schema,
        ("other/namespace", '{"not": "ours"}'),
        (fmt.RUN_JSON_NAMESPACE, '{"kind": "zstack"}'),
        (fmt.FRAMES_JSON_NAMESPACE, '[{"z_um": 1.5}, {"z_um": 2.0}]'),
    )
    assert fmt.comment_annotation(ome, fmt.RUN_JSON_NAMESPACE) == '{"kind": "zstack"}'
    assert fmt.annotated_object(ome, fmt.RUN_JSON_NAMESPACE) == {"kind": "zstack"}
    assert fmt.annotated_list(ome, fmt.FRAMES_JSON_NAMESPACE) == [
        {"z_um": 1.5},
        {"z_um": 2.0},
    ]
    assert fmt.annotated_object(ome, fmt.VOLUMES_RUN_JSON_NAMESPACE) is None
    assert fmt.annotated_list(None, fmt.FRAMES_JSON_NAMESPACE) is None
    assert (
        fmt.comment_annotation(
            _ome(schema, (fmt.RUN_NAMESPACE, None)), fmt.RUN_NAMESPACE
        )
        is None
    )


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ("[1, 2]", fmt.annotated_object),
        ('{"a": 1}', fmt.annotated_list),
        ("[1, 2]", fmt.annotated_list),
        ("{not json", fmt.annotated_object),
    ],
)
def test_annotations_that_are_not_the_writers_json_raise_value_error(
    text: str, read: object
) -> None:
    assert callable(read)
    ome = _ome("2016-06", (fmt.RUN_JSON_NAMESPACE, text))
    with pytest.raises(ValueError):
        read(ome, fmt.RUN_JSON_NAMESPACE)


def test_page_descriptions_round_trip(tmp_path: Path) -> None:
    frames_path, volumes_path = tmp_path / "frames.tif", tmp_path / "volumes.tif"
    run = {"kind": "timelapse", "devices": {"Optics": {"NA": "0.8"}}}
    frames = [{"time_s": 0.0}, {"time_s": 0.5}, {"time_s": 1.0}]
    with tifffile.TiffWriter(frames_path) as tif:
        for k, meta in enumerate(frames):
            description = fmt.frame_page_description(k, meta, run if k == 0 else None)
            tif.write(
                np.zeros((2, 3), np.uint16), description=description, metadata=None
            )
    volumes = [{"frame_index": 0}, {"frame_index": 1}]
    with tifffile.TiffWriter(volumes_path) as tif:
        for t, meta in enumerate(volumes):
            for k in range(3):
                description = fmt.volume_page_description(
                    t, k, meta if k == 0 else None
                )
                tif.write(
                    np.zeros((2, 3), np.float32), description=description, metadata=None
                )

    with tifffile.TiffFile(frames_path) as tif:
        assert fmt.page_run_metadata(tif) == run
        assert fmt.page_frame_metadata(tif) == frames
    with tifffile.TiffFile(volumes_path) as tif:
        assert fmt.page_volume_metadata(tif) == volumes
        assert fmt.page_run_metadata(tif) == {}  # volumes keep no run in their pages


def test_a_zstack_reads_alike_in_acquisition_and_inference(tmp_path: Path) -> None:
    """The writers' exact per-frame z reaches both layers' readers unchanged."""
    path = tmp_path / "stack.ome.tif"
    z_um = [10.0, 10.3, 10.6, 10.9]  # 0.3 µm steps the OME-XML would round
    run = {"devices": {"Optics": {"NA": "0.75", "EmissionWavelength_nm": "520"}}}
    with OmeTiffWriter(
        path,
        axes="ZYX",
        frame_shape=(8, 8),
        pixel_size_um=0.5,
        z_step_um=0.3,
        run_metadata=run,
    ) as writer:
        for k, z in enumerate(z_um):
            writer.append(np.full((8, 8), k, np.uint16), {"z_um": z})
    with tifffile.TiffFile(path) as tif:
        assert fmt.annotated_object(tif.ome_metadata, fmt.RUN_JSON_NAMESPACE) == run
    assert [m["z_um"] for m in read_frame_metadata(path)] == z_um
    (stack,) = read_stacks(path)
    assert list(stack.z_um) == z_um
    assert stack.na == 0.75
    assert stack.wavelength_um == pytest.approx(0.52)
