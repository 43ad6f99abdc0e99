"""`ZStack`: one z-stack of a single channel and time point, in raw intensity units.

The raw material of Deep-Z training and evaluation: planes, their focus positions,
the pixel size and whatever optics the file recorded, and, for the simulator's
recordings, the noise-free twin and the true object positions (ground truth).
`read_stacks` makes them from TIFF files; code that has arrays builds them directly.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace

import numpy as np

__all__ = ["ZStack"]


@dataclass(frozen=True, eq=False)
class ZStack:
    """One z-stack of a single channel and time point, in raw intensity units.

    Parameters
    ----------
    data : numpy.ndarray
        ``(Z, Y, X)`` intensities as recorded (camera counts), stored as float32.
    z_um : numpy.ndarray
        ``(Z,)`` focus position of each plane in µm, strictly increasing.
    pixel_um : tuple of float
        Sample-plane pixel size ``(y, x)`` in µm.
    source : str
        Where the stack came from, e.g. ``"run.ome.tif"``, ``"movie.tif[t=2]"`` or
        ``"pair.tif[c=1]"``.
    wavelength_um : float or None
        Emission wavelength in µm, where the file records it.
    na : float or None
        Numerical aperture of the objective, where the file records it.
    camera_offset : float or None
        Camera dark level (counts added to every pixel), where the file records it.
    clean : numpy.ndarray or None
        ``(Z, Y, X)`` noise-free twin of ``data`` in the same units (the expected
        camera signal), where the simulator saved one (``deepz zstack
        --ground-truth``): clean training targets and clean evaluation scores.
    objects : numpy.ndarray or None
        ``(N, 3)`` true ``(z_um, y_px, x_px)`` of the objects in the stack (the
        focus position at which each is sharpest, on ``z_um``'s axis, and its pixel
        position), where the simulator saved them.

    Raises
    ------
    ValueError
        Inconsistent shapes, fewer than 2 planes, z not strictly increasing, or a
        non-positive pixel size.
    """

    data: np.ndarray
    z_um: np.ndarray
    pixel_um: tuple[float, float]
    source: str
    wavelength_um: float | None = None
    na: float | None = None
    camera_offset: float | None = None
    clean: np.ndarray | None = None
    objects: np.ndarray | None = None

    def __post_init__(self) -> None:
        data = np.ascontiguousarray(self.data, dtype=np.float32)
        z_um = np.asarray(self.z_um, dtype=np.float64).reshape(-1)
        if data.ndim != 3:
            raise ValueError(f"ZStack data must be (Z, Y, X), got shape {data.shape}")
        if data.shape[0] < 2:
            raise ValueError(f"a ZStack needs at least 2 planes, got {data.shape[0]}")
        if z_um.shape != (data.shape[0],):
            raise ValueError(
                f"z_um has {z_um.size} values for {data.shape[0]} planes "
                f"({self.source})"
            )
        if not np.all(np.isfinite(z_um)) or not np.all(np.diff(z_um) > 0):
            raise ValueError(f"z_um must be finite and strictly increasing: {z_um}")
        pixel = (float(self.pixel_um[0]), float(self.pixel_um[1]))
        if not all(math.isfinite(p) and p > 0 for p in pixel):
            raise ValueError(f"pixel_um must be positive, got {self.pixel_um}")
        if self.clean is not None:
            clean = np.ascontiguousarray(self.clean, dtype=np.float32)
            if clean.shape != data.shape:
                raise ValueError(
                    f"the noise-free twin of {self.source} has shape {clean.shape}, "
                    f"the stack {data.shape}"
                )
            object.__setattr__(self, "clean", clean)
        if self.objects is not None:
            objects = np.asarray(self.objects, dtype=np.float64).reshape(-1, 3)
            object.__setattr__(self, "objects", objects)
        # frozen dataclass: normalise the fields once, here
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "z_um", z_um)
        object.__setattr__(self, "pixel_um", pixel)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(Z, Y, X)`` size of the stack."""
        z, y, x = self.data.shape
        return z, y, x

    @property
    def voxel_um(self) -> tuple[float, float, float]:
        """``(dz, py, px)`` in µm; dz is the median plane spacing."""
        return (
            float(np.median(np.diff(self.z_um))),
            self.pixel_um[0],
            self.pixel_um[1],
        )

    def crop_columns(self, x_start: int, x_stop: int) -> ZStack:
        """The stack restricted to columns ``x_start:x_stop`` (source gets ``[x=a:b]``).

        Raises
        ------
        ValueError
            An empty or out-of-range band.
        """
        return self.crop(0, self.data.shape[1], x_start, x_stop)

    def crop(self, y_start: int, y_stop: int, x_start: int, x_stop: int) -> ZStack:
        """The stack cut to rows ``y_start:y_stop``, columns ``x_start:x_stop``.

        ``source`` gets ``[y=a:b]`` and/or ``[x=a:b]`` for the axes actually cut;
        the noise-free twin and the objects are cut alike.

        Raises
        ------
        ValueError
            An empty or out-of-range band.
        """
        _, height, width = self.data.shape
        for name, start, stop, size in (
            ("Row", y_start, y_stop, height),
            ("Column", x_start, x_stop, width),
        ):
            if not 0 <= start < stop <= size:
                raise ValueError(
                    f"{name} range {start}:{stop} is outside {self.source} "
                    f"({'height' if name == 'Row' else 'width'} {size} px); choose "
                    f"0 ≤ start < stop ≤ {size}."
                )
        if (y_start, y_stop, x_start, x_stop) == (0, height, 0, width):
            return self
        tags = ""
        if (y_start, y_stop) != (0, height):
            tags += f"[y={y_start}:{y_stop}]"
        if (x_start, x_stop) != (0, width):
            tags += f"[x={x_start}:{x_stop}]"
        objects = self.objects
        if objects is not None:
            inside = (
                (objects[:, 1] >= y_start - 0.5)
                & (objects[:, 1] < y_stop - 0.5)
                & (objects[:, 2] >= x_start - 0.5)
                & (objects[:, 2] < x_stop - 0.5)
            )
            objects = objects[inside] - np.array([0.0, y_start, x_start])
        window = (slice(None), slice(y_start, y_stop), slice(x_start, x_stop))
        return replace(
            self,
            data=self.data[window],
            source=f"{self.source}{tags}",
            clean=None if self.clean is None else self.clean[window],
            objects=objects,
        )

    @property
    def has_ground_truth(self) -> bool:
        """Whether the stack carries its noise-free twin (simulator ground truth)."""
        return self.clean is not None

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the pixels, plane positions and pixel size.

        Identifies the training data in a model's provenance: two stacks with the
        same fingerprint hold the same numbers at the same geometry.
        """
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.data, dtype="<f4").tobytes())
        digest.update(np.ascontiguousarray(self.z_um, dtype="<f8").tobytes())
        digest.update(np.asarray(self.pixel_um, dtype="<f8").tobytes())
        return digest.hexdigest()

    def __repr__(self) -> str:
        dz, py, px = self.voxel_um
        return (
            f"ZStack({self.source!r}, shape={self.shape}, "
            f"voxel_um=({dz:.4g}, {py:.4g}, {px:.4g}))"
        )
