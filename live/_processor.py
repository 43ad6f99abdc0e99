"""`RefocuserProcessor`: a Deep-Z model as acquisition's `FrameProcessor`.

It adapts an `inference.Refocuser` to the structural `FrameProcessor` protocol of
`deepz_live.acquisition`, so that a `LiveSession` refocuses every frame of a
time-lapse while it is taken. It checks, before any light, that the planes lie in the
model's trained range and that the model fits the microscope (pixel size, NA,
wavelength), and it describes the model (name, file, SHA-256, backend, any fallback)
for the volume file's metadata.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np

from deepz_live.acquisition import PlaneError, check_planes, default_planes
from deepz_live.inference import LIVE_MODEL_NAME

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from deepz_live.inference import ModelInfo, Refocuser

__all__ = ["RefocuserProcessor"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class RefocuserProcessor:
    """A Deep-Z model as acquisition's `FrameProcessor`: frame → volume.

    The model's description is read (and the planes checked against its range) at
    construction, in the calling thread; the network itself is loaded in `setup`, on
    the session's worker thread, which then owns it (and its GPU context).

    Parameters
    ----------
    model : str or Path
        A bundled model name (default `LIVE_MODEL_NAME`) or a model file.
    planes_um : sequence of float, optional
        Planes of every volume, µm from the frame's focus; default
        `default_planes` of the model's range.
    backend, device : str
        As for `inference.Refocuser` (``"auto"``, ``"cpu"``...).
    threads : int, optional
        CPU threads for the backend.
    allow_mismatch : bool
        Refocus even when the microscope's pixel size, NA or wavelength differ from
        the model's (a warning, recorded in the volume metadata). By default that is
        an error before any frame is taken.
    warm_up : bool
        Refocus one blank frame in `setup`, so that the first real frame does not pay
        for first-call allocations (the latency figures then mean something).
    require_pixel_size : bool
        Treat an unknown pixel size (None) as a mismatch: refused unless
        ``allow_mismatch``, else recorded. `live_refocus` and `refocus_file` set it:
        a microscope without a pixel-size calibration, or a saved file that does not
        record its pixel size, cannot be checked.
    **refocuser_options
        Passed on to `inference.Refocuser` (e.g. ``batch_size``, ``precision``).

    Raises
    ------
    inference.ModelFileError
        No such model.
    inference.InferenceError
        Planes outside the model's trained range.
    """

    def __init__(
        self,
        model: str | Path = LIVE_MODEL_NAME,
        planes_um: Sequence[float] | None = None,
        *,
        backend: str = "auto",
        device: str = "cpu",
        threads: int | None = None,
        allow_mismatch: bool = False,
        warm_up: bool = True,
        require_pixel_size: bool = False,
        **refocuser_options: Any,
    ) -> None:
        from deepz_live.inference import (
            InferenceError,
            read_model_info,
            resolve_model_path,
        )

        self.model = model
        self.model_path = resolve_model_path(model)
        self.info: ModelInfo = read_model_info(self.model_path)
        if planes_um is None:
            planes_um = default_planes(self.info.dz_range_um)
        try:
            self._planes = check_planes(
                np.atleast_1d(np.asarray(planes_um, float)),
                self.info.dz_range_um,
                model=f"model {self.info.name!r}",
            )
        except (PlaneError, ValueError) as exc:
            raise InferenceError(f"Planes: {exc}") from None
        self.backend = backend
        self.device = device
        self.threads = threads
        self.allow_mismatch = allow_mismatch
        self.warm_up = warm_up
        self.require_pixel_size = require_pixel_size
        self.refocuser_options = refocuser_options
        self.sha256 = _sha256(self.model_path)
        self.mismatches: list[str] = []
        self.refocuser: Refocuser | None = None

    @property
    def planes_um(self) -> tuple[float, ...]:
        """Planes of every volume (µm from the frame's focus)."""
        return self._planes

    def check_microscope(
        self,
        pixel_size_um: float | None,
        *,
        na: float | None = None,
        emission_wavelength_um: float | None = None,
        require_pixel_size: bool | None = None,
    ) -> list[str]:
        """Compare the microscope with the model; raise on a mismatch unless allowed.

        Parameters
        ----------
        pixel_size_um : float or None
            Sample-plane pixel size of the frames (None: not calibrated, not checked
            unless ``require_pixel_size``).
        na, emission_wavelength_um : float, optional
            The objective's NA and the emission wavelength, when known.
        require_pixel_size : bool, optional
            An unknown pixel size is a mismatch (default: the constructor's
            ``require_pixel_size``).

        Returns
        -------
        list of str
            The mismatches (empty when the model fits); warned about when allowed.

        Raises
        ------
        inference.ModelFileError
            A mismatch, and ``allow_mismatch`` is False.
        """
        import warnings

        from deepz_live.inference import (
            ModelFileError,
            ModelMismatchWarning,
            check_compatibility,
        )

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ModelMismatchWarning)
            messages = check_compatibility(
                self.info,
                pixel_size_um=pixel_size_um,
                wavelength_um=emission_wavelength_um,
                na=na,
            )
        if require_pixel_size is None:
            require_pixel_size = self.require_pixel_size
        if pixel_size_um is None and require_pixel_size:
            unknown = (
                "the frames' sample-plane pixel size is unknown, so they cannot be "
                f"checked against model {self.info.name!r} (trained at "
                f"{self.info.pixel_size_um:g} µm/pixel)"
            )
            if not self.allow_mismatch:
                raise ModelFileError(
                    unknown[0].upper()
                    + unknown[1:]
                    + ": state the pixel size (--pixel-size-um, pixel_size_um=), or "
                    f"pass --allow-model-mismatch (allow_model_mismatch=True) to "
                    f"refocus as if it were {self.info.pixel_size_um:g} µm."
                )
            messages.insert(
                0,
                f"{unknown}; refocused as if it were {self.info.pixel_size_um:g} µm "
                "(allow_model_mismatch)",
            )
        self.mismatches = messages
        if messages and not self.allow_mismatch:
            raise ModelFileError(
                f"Model {self.info.name!r} does not fit this microscope: "
                + "; ".join(messages)
                + ". To refocus anyway (results will be wrong by that much), pass "
                "--allow-model-mismatch (allow_model_mismatch=True)."
            )
        for message in messages:
            warnings.warn(message, ModelMismatchWarning, stacklevel=2)
        return messages

    def setup(
        self, frame_shape: tuple[int, int], dtype: np.dtype, metadata: dict[str, Any]
    ) -> None:
        """Check the microscope, load the network (on this thread), warm it up."""
        from deepz_live.inference import Refocuser

        self.check_microscope(
            metadata.get("pixel_size_um"),
            na=metadata.get("na"),
            emission_wavelength_um=metadata.get("emission_wavelength_um"),
        )
        self.refocuser = Refocuser(
            self.model,
            backend=self.backend,
            device=self.device,
            threads=self.threads,
            **self.refocuser_options,
        )
        if self.warm_up:
            # integers: a blank float frame would be refused as "not camera counts";
            # only the shape matters for what the warm-up allocates
            self.refocuser.refocus(np.zeros(frame_shape, np.uint16), self._planes)

    def process(self, frame: np.ndarray) -> np.ndarray:
        """Refocus one frame to ``planes_um``: ``(planes, Y, X)`` float32."""
        if self.refocuser is None:
            raise RuntimeError("RefocuserProcessor.setup() was not called")
        return self.refocuser.refocus(frame, self._planes)

    def close(self) -> None:
        """Drop the network (and what it holds on the device)."""
        self.refocuser = None

    def describe(self) -> dict[str, Any]:
        """The model's identity and the refocusing settings, for file metadata."""
        refocuser = self.refocuser
        return {
            "kind": "deepz.RefocuserProcessor",
            "model": self.info.name,
            "model_file": str(self.model_path),
            "model_sha256": self.sha256,
            "model_created": self.info.created,
            "model_pixel_size_um": self.info.pixel_size_um,
            "model_wavelength_um": self.info.wavelength_um,
            "model_na": self.info.na,
            "dz_range_um": self.info.dz_range_um,
            "backend": self.backend if refocuser is None else refocuser.backend,
            # why backend "auto" left TensorRT for torch (None: it did not)
            "backend_fallback": getattr(refocuser, "backend_fallback", None),
            "device": self.device if refocuser is None else str(refocuser.device),
            "planes_um": list(self._planes),
            "model_mismatch": list(self.mismatches),
        }

    def __repr__(self) -> str:
        return (
            f"RefocuserProcessor({self.info.name!r}, planes={len(self._planes)}, "
            f"backend={self.backend!r})"
        )
