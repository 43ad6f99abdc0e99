"""The seam between acquisition and inference: `FrameProcessor` and what it is told.

A `LiveSession` hands every frame it refocuses to a `FrameProcessor`; in deepz-live
that is a Deep-Z refocuser adapted by ``deepz``, but this layer knows nothing of
models. Before the first frame the processor is told the frames' shape and dtype and
a small, versioned metadata dict (`SETUP_METADATA_VERSION`) with the optics that
`microscope_optics` reads from the microscope when it can.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

    from deepz_live.acquisition._scope import Microscope

__all__ = [
    "OPTICS_DEVICE",
    "SETUP_METADATA_VERSION",
    "FrameProcessor",
    "microscope_optics",
]

SETUP_METADATA_VERSION = 1
OPTICS_DEVICE = "Optics"
"""Label of a device with ``NA`` / ``EmissionWavelength_nm`` (the simulator's)."""


@runtime_checkable
class FrameProcessor(Protocol):
    """What turns a frame into a volume; implemented outside this layer.

    ``deepz`` adapts an `inference.Refocuser` to it (``deepz.RefocuserProcessor``);
    tests use simple stand-ins. All methods are called on the session's worker
    thread, in the order ``setup`` → ``process``... → ``close``.

    Attributes
    ----------
    planes_um : sequence of float
        The planes every volume holds (µm from the frame's focus), in order.
    """

    @property
    def planes_um(self) -> Sequence[float]:
        """Planes of each volume, µm from the frame's focus."""
        ...

    def setup(
        self, frame_shape: tuple[int, int], dtype: np.dtype, metadata: dict[str, Any]
    ) -> None:
        """Prepare for frames of this shape and dtype; raise if they cannot be served.

        Parameters
        ----------
        frame_shape : tuple of int
            ``(height, width)`` of every frame of the run.
        dtype : numpy.dtype
            Pixel type of every frame (uint16 for most cameras).
        metadata : dict
            Version 1: ``version``, ``pixel_size_um`` (µm at the sample, or None),
            ``na`` and ``emission_wavelength_um`` (None when the microscope does not
            say), ``exposure_ms``, ``camera``, ``config``, ``frames``, ``policy``.
        """
        ...

    def process(self, frame: np.ndarray) -> np.ndarray:
        """Turn one ``(Y, X)`` frame into a ``(planes, Y, X)`` float32 volume."""
        ...

    def close(self) -> None:
        """Release what `setup` allocated."""
        ...

    def describe(self) -> dict[str, Any]:
        """Identity for the volume file's metadata (model name, hash, backend...)."""
        ...


def microscope_optics(scope: Microscope) -> dict[str, float | None]:
    """NA and emission wavelength (µm) from an ``Optics`` device, when there is one.

    Returns
    -------
    dict
        ``{"na": ..., "emission_wavelength_um": ...}``, None where not known (most
        real configurations have no such device).
    """
    core = scope.core
    values: dict[str, float | None] = {"na": None, "emission_wavelength_um": None}
    if OPTICS_DEVICE not in core.getLoadedDevices():
        return values
    for key, prop, scale in (
        ("na", "NA", 1.0),
        ("emission_wavelength_um", "EmissionWavelength_nm", 1e-3),
    ):
        if core.hasProperty(OPTICS_DEVICE, prop):
            try:
                values[key] = float(core.getProperty(OPTICS_DEVICE, prop)) * scale
            except (RuntimeError, ValueError):
                pass
    return values
