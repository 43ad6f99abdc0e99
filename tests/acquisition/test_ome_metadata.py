"""Standard OME metadata of every file kind: schema-valid, optics where OME looks.

Files are written on the simulator (small, binned, simulated clock), validated
against the OME 2016-06 schema with ome-types (lxml), and read back through
ome-types: the Objective's NA, the Channel's emission wavelength, DeltaT from 0 at
the first frame and PositionZ as focus-drive travel.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tifffile

from deepz_live.acquisition import (
    OmeTiffWriter,
    acquire_timelapse,
    acquire_zstack,
    open_microscope,
    open_volume_writer,
    read_frame_metadata,
    read_run_metadata,
)

ome_types = pytest.importorskip("ome_types")
pytest.importorskip("lxml")  # ome-types validates with lxml

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from deepz_live.acquisition import Microscope

SHAPE = (8, 12)


def _validated(path: Path) -> Any:
    """The file's OME-XML, validated against the OME schema, as an ome-types OME."""
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
    assert xml is not None, f"{path} has no OME-XML"
    ome_types.validate_xml(xml)  # raises on any schema violation
    return ome_types.from_xml(xml)


def _map(ome: Any, namespace: str) -> dict[str, str]:
    for annotation in ome.structured_annotations.map_annotations:
        if annotation.namespace == namespace:
            return {m.k: m.value for m in annotation.value.ms}
    raise AssertionError(f"no MapAnnotation {namespace!r}")


def _objective(ome: Any) -> Any:
    """The Objective the image's ObjectiveSettings refer to (as OME links them)."""
    image = ome.images[0]
    assert image.instrument_ref.id == ome.instruments[0].id
    (objective,) = [
        o for o in ome.instruments[0].objectives if o.id == image.objective_settings.id
    ]
    return objective


@pytest.fixture(scope="module")
def simulator() -> Iterator[Microscope]:
    """The simulator at 4×4 binning and a 48×40 ROI, simulated clock, focused."""
    with open_microscope() as scope:
        core = scope.core
        core.setProperty("Camera", "Clock", "simulated")
        core.setProperty("Camera", "Binning", "4")
        core.setROI(40, 44, 48, 40)
        scope.focus_on_specimen()
        yield scope


@pytest.fixture(scope="module")
def zstack(simulator: Microscope, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5-plane z-stack with its ground-truth twin; the clock runs before it."""
    simulator.core.snapImage()  # the camera clock is past 0 when the stack starts
    out = tmp_path_factory.mktemp("zstack") / "stack.ome.tif"
    acquire_zstack(
        simulator,
        range_um=4.0,
        step_um=1.0,
        exposure_ms=5.0,
        out=out,
        ground_truth=True,
    )
    return out


def _property(scope: Microscope, device: str, name: str) -> float:
    return float(scope.core.getProperty(device, name))


def test_zstack_carries_instrument_channel_and_planes(
    simulator: Microscope, zstack: Path
) -> None:
    ome = _validated(zstack)
    frames = read_frame_metadata(zstack)
    run = read_run_metadata(zstack)

    objective = _objective(ome)
    assert objective.lens_na == pytest.approx(_property(simulator, "Optics", "NA"))
    assert objective.nominal_magnification == pytest.approx(
        _property(simulator, "Optics", "Magnification")
    )
    assert objective.immersion.value == "Air"  # ImmersionIndex 1.0
    settings = ome.images[0].objective_settings
    assert settings.medium.value == "Air"
    assert settings.refractive_index == pytest.approx(1.0)

    (channel,) = ome.images[0].pixels.channels
    assert channel.emission_wavelength == pytest.approx(
        _property(simulator, "Optics", "EmissionWavelength_nm")
    )
    assert channel.emission_wavelength_unit.value == "nm"
    assert channel.fluor is None  # the simulator names no fluorophore: left out
    (detector,) = ome.instruments[0].detectors
    assert channel.detector_settings.id == detector.id
    assert channel.detector_settings.offset == pytest.approx(
        _property(simulator, "Camera", "Offset")
    )
    assert channel.detector_settings.binning.value == "4x4"

    pixels = ome.images[0].pixels
    assert (pixels.size_z, pixels.size_t) == (5, 1)
    assert pixels.physical_size_z == pytest.approx(1.0)
    planes = pixels.planes
    assert [p.the_z for p in planes] == list(range(5))
    # PositionZ: the focus drive's position in µm, exactly as each frame recorded it
    assert [p.position_z for p in planes] == pytest.approx([f["z_um"] for f in frames])
    assert {p.position_z_unit.value for p in planes} == {"µm"}
    assert np.diff([p.position_z for p in planes]) == pytest.approx([1.0] * 4)
    # DeltaT: 0 at the first frame, the frames' own intervals after it
    times = [f["time_s"] for f in frames]
    assert times[0] > 0  # the camera clock ran before: DeltaT is not time_s
    assert planes[0].delta_t == 0
    assert [p.delta_t for p in planes] == pytest.approx(np.subtract(times, times[0]))
    assert ome.images[0].acquisition_date.isoformat() == run["started"]

    axes = _map(ome, "deepz-live/axes")
    assert "not depth in the sample" in axes["PositionZ"]
    assert float(axes["SampleRefractiveIndex"]) == pytest.approx(
        _property(simulator, "Optics", "SampleIndex")
    )
    # what OME has no field for stays in deepz-live's own annotations
    assert "dose_J_cm2" in frames[0]
    assert _map(ome, "deepz-live/run")["kind"] == "zstack"


def test_ground_truth_twin_is_valid_ome(zstack: Path) -> None:
    clean = zstack.with_name("stack.clean.ome.tif")
    pixels = _validated(clean).images[0].pixels
    assert pixels.size_z == 5
    assert [p.position_z for p in pixels.planes] == pytest.approx(
        [f["z_um"] for f in read_frame_metadata(zstack)]
    )


def test_timelapse_deltat_starts_at_zero(simulator: Microscope, tmp_path: Path) -> None:
    simulator.core.snapImage()
    out = tmp_path / "movie.ome.tif"
    acquire_timelapse(simulator, frames=3, interval_ms=0, exposure_ms=5.0, out=out)
    ome = _validated(out)
    frames = read_frame_metadata(out)
    pixels = ome.images[0].pixels
    assert (pixels.size_z, pixels.size_t) == (1, 3)
    assert pixels.physical_size_z is None  # a time-lapse has no z step
    assert [p.the_t for p in pixels.planes] == [0, 1, 2]
    times = [f["time_s"] for f in frames]
    assert times[0] > 0
    assert [p.delta_t for p in pixels.planes] == pytest.approx(
        np.subtract(times, times[0])
    )
    assert pixels.planes[0].delta_t == 0
    assert _objective(ome).lens_na == pytest.approx(0.75)
    assert pixels.channels[0].emission_wavelength == pytest.approx(525.0)


def test_volumes_carry_instrument_and_refocused_z(zstack: Path, tmp_path: Path) -> None:
    raw = read_run_metadata(zstack)
    run = {
        "kind": "offline-volumes",
        "model": "test",
        **{key: raw[key] for key in ("started", "camera", "devices")},
    }
    path = tmp_path / "worm.volumes.ome.tif"
    planes_um = [-2.0, 0.0, 2.0]
    with open_volume_writer(
        path,
        planes_um=planes_um,
        frame_shape=SHAPE,
        pixel_size_um=1.3,
        run_metadata=run,
    ) as writer:
        for t in range(2):
            writer.append(
                np.zeros((3, *SHAPE), np.float32),
                {"frame_index": t, "time_s": 4.5 + 0.25 * t, "z_um": 10.0 + t},
            )
    ome = _validated(path)
    assert _objective(ome).lens_na == pytest.approx(0.75)
    (channel,) = ome.images[0].pixels.channels
    assert channel.emission_wavelength == pytest.approx(525.0)
    assert channel.detector_settings.offset == pytest.approx(100.0)
    planes = ome.images[0].pixels.planes
    assert [(p.the_t, p.the_z) for p in planes[:4]] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert [p.delta_t for p in planes] == pytest.approx([0.0] * 3 + [0.25] * 3)
    # PositionZ = the frame's focus + the plane's refocusing distance (focus travel)
    assert [p.position_z for p in planes] == pytest.approx([8, 10, 12, 9, 11, 13])
    axes = _map(ome, "deepz-live/axes")
    assert axes["planes_um"] == "[-2.0, 0.0, 2.0]"
    assert "focus travel" in axes["TheZ"]
    assert "not depth in the sample" in axes["PositionZ"]


def test_volumes_without_devices_have_no_instrument(tmp_path: Path) -> None:
    path = tmp_path / "bare.volumes.ome.tif"
    with open_volume_writer(
        path, planes_um=[-1.0, 3.0], frame_shape=SHAPE, pixel_size_um=None
    ) as writer:
        writer.append(np.ones((2, *SHAPE)), {"time_s": 2.0})
    ome = _validated(path)
    assert ome.instruments == []
    image = ome.images[0]
    assert image.objective_settings is None
    assert image.acquisition_date is None
    assert image.pixels.channels[0].emission_wavelength is None
    assert [p.position_z for p in image.pixels.planes] == [None, None]
    assert [p.delta_t for p in image.pixels.planes] == [0.0, 0.0]


def test_unknown_values_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "partial.ome.tif"
    run = {
        "started": "not a date",
        # no "camera": no Detector, even though a device has an Offset
        "devices": {
            "Optics": {"NA": "1.2", "ImmersionIndex": "1.45"},
            "Cam": {"Offset": "100"},
        },
    }
    with OmeTiffWriter(
        path, axes="TYX", frame_shape=SHAPE, pixel_size_um=0.1, run_metadata=run
    ) as writer:
        writer.append(np.zeros(SHAPE, np.uint16), {"time_s": 1.0, "z_um": -3.5})
    ome = _validated(path)
    objective = _objective(ome)
    assert objective.lens_na == pytest.approx(1.2)
    assert objective.nominal_magnification is None
    assert objective.immersion is None  # 1.45 names no medium
    assert ome.images[0].objective_settings.refractive_index == pytest.approx(1.45)
    assert ome.images[0].objective_settings.medium is None
    assert ome.instruments[0].detectors == []
    channel = ome.images[0].pixels.channels[0]
    assert channel.detector_settings is None
    assert channel.emission_wavelength is None
    assert ome.images[0].acquisition_date is None
    (plane,) = ome.images[0].pixels.planes
    assert (plane.delta_t, plane.position_z) == (0.0, -3.5)


def test_inference_reads_the_standard_fields(zstack: Path, tmp_path: Path) -> None:
    """A copy without deepz-live's JSON reads the same optics from OME alone."""
    from deepz_live.inference import read_stacks

    with tifffile.TiffFile(zstack) as tif:
        xml = tif.ome_metadata
        data = tif.asarray()
    xml = re.sub(
        r"<StructuredAnnotations>.*</StructuredAnnotations>", "", xml, flags=re.S
    )
    xml = re.sub(r'<AnnotationRef ID="[^"]*" ?/>', "", xml)
    assert "<CommentAnnotation" not in xml and "<AnnotationRef" not in xml
    copy = tmp_path / "standard-only.ome.tif"
    tifffile.imwrite(copy, data, description=xml, metadata=None)
    ome_types.validate_xml(tifffile.TiffFile(copy).ome_metadata)

    (stack,) = read_stacks(copy)
    (original,) = read_stacks(zstack)
    assert stack.na == pytest.approx(0.75)
    assert stack.wavelength_um == pytest.approx(0.525)
    assert stack.camera_offset == pytest.approx(100.0)
    np.testing.assert_allclose(stack.z_um, original.z_um)
    assert stack.pixel_um == pytest.approx(original.pixel_um)
