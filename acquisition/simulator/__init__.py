"""A physically faithful simulated widefield fluorescence microscope.

Micro-Manager Python devices (``Camera``, ``Z``, ``LED``, ``Optics``, ``Specimen``)
declared in ``hardware_configs/simulator.cfg``, plus the physics they use: a vectorial
pupil-function PSF with refractive-index mismatch, an EMVA 1288 camera, specimens with
GCaMP-like activity and bleaching, and noise-free ground truth via `bench_for`.
"""

from ._camera_model import CameraNoiseModel
from ._devices import (
    LED,
    Bench,
    Camera,
    FocusStage,
    OpticsDevice,
    SpecimenDevice,
    bench_for,
)
from ._optics import HankelImaging, Optics, VectorialPSF, pixelate_profile
from ._render import Renderer, photon_scale
from ._specimens import KINDS, CalciumActivity, Specimen, make_specimen

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
