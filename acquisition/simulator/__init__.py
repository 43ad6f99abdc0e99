"""A physically faithful simulated widefield fluorescence microscope.

Micro-Manager Python devices (``Camera``, ``Z``, ``LED``, ``Optics``, ``Specimen``)
declared in ``hardware_configs/simulator.cfg``, plus the physics they use: a vectorial
pupil-function PSF with refractive-index mismatch, an EMVA 1288 camera, specimens with
GCaMP-like activity and bleaching, and noise-free ground truth via `bench_for`.
"""

from ._bench import Bench, bench_for
from ._camera_device import Camera
from ._camera_model import CameraNoiseModel
from ._optics import HankelImaging, Optics, VectorialPSF, pixelate_profile
from ._optics_devices import OpticsDevice, SpecimenDevice
from ._render import Renderer, photon_scale
from ._specimens import KINDS, CalciumActivity, Specimen, make_specimen
from ._stage_led_devices import LED, FocusStage

__all__ = [
    "KINDS",
    "LED",
    "Bench",
    "CalciumActivity",
    "Camera",
    "CameraNoiseModel",
    "FocusStage",
    "HankelImaging",
    "Optics",
    "OpticsDevice",
    "Renderer",
    "Specimen",
    "SpecimenDevice",
    "VectorialPSF",
    "bench_for",
    "make_specimen",
    "photon_scale",
    "pixelate_profile",
]
