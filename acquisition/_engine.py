"""The MDA engine used by deepz-live: pymmcore-plus's engine with two repairs.

* **Camera metadata for snapped frames.** pymmcore-plus puts a camera's per-image
  metadata into ``meta["camera_metadata"]`` only for sequenced (streamed) frames. For
  single snaps it is missing, so a z-stack would lose the simulator's time, z and
  light-dose record of each frame. `DeepzEngine` adds it for the simulated camera
  (from ``bench.camera.last_frame_metadata``); a real camera's snaps stay as
  pymmcore-plus makes them.
* **A failed snap is an error, not a missing frame.** pymmcore-plus logs a warning and
  moves on when ``snapImage`` raises, which silently shortens a time-lapse or leaves
  a hole in a z-stack. Here it raises `AcquisitionError` (set
  ``raise_on_snap_error=False`` for the upstream behaviour).

* **A failing focus drive names itself.** When the focus device raises while the
  engine moves it for an event, the error says which device, where to and for which
  event (`AcquisitionError`), instead of the driver's bare message.
* **No warm-up inside the run.** With the simulator, the object images for the
  starting focus are computed in ``setup_sequence``, before the first exposure.
* **The light goes off after a stream.** A sequence acquisition that ends by itself
  (the usual interval-0 time-lapse) never calls ``stopSequenceAcquisition``, so a
  shutter that `acquisition.DeepzCore` opened for the stream would stay open. The
  engine stops the finished sequence at teardown, which closes it.

The first two wrap `MDAEngine.exec_single_event`, the third ``_set_event_z``
(pymmcore-plus 0.18); the runner is untouched.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pymmcore_plus.mda import MDAEngine

from deepz_live.acquisition._errors import AcquisitionError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pymmcore_plus import CMMCorePlus
    from pymmcore_plus.mda._protocol import PImagePayload
    from pymmcore_plus.metadata import SummaryMetaV1
    from useq import MDAEvent, MDASequence

__all__ = ["DeepzEngine"]

_PYMMCORE_LOGGER = "pymmcore-plus"
_SNAP_FAILED = "Failed to snap image"
_NOT_LOOKED_UP = object()


class _SnapFailureCatcher(logging.Handler):
    """Catches the error that pymmcore-plus logs (not raises) when a snap fails."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.error: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith(_SNAP_FAILED):
            self.error = next(
                (a for a in record.args or () if isinstance(a, BaseException)), None
            )

    def __enter__(self) -> _SnapFailureCatcher:
        logging.getLogger(_PYMMCORE_LOGGER).addHandler(self)
        return self

    def __exit__(self, *_: object) -> None:
        logging.getLogger(_PYMMCORE_LOGGER).removeHandler(self)


class DeepzEngine(MDAEngine):
    """`MDAEngine` that records simulated-camera metadata for snaps and fails loudly.

    Parameters
    ----------
    mmc : CMMCorePlus
        The core to drive.
    raise_on_snap_error : bool
        Raise `AcquisitionError` when the camera fails to snap (default). False keeps
        pymmcore-plus's behaviour: log a warning and skip the frame.
    **kwargs : Any
        Passed on to `MDAEngine`.
    """

    def __init__(
        self, mmc: CMMCorePlus, *, raise_on_snap_error: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(mmc, **kwargs)
        self.raise_on_snap_error = raise_on_snap_error
        self._bench: Any = _NOT_LOOKED_UP

    def setup_sequence(self, sequence: MDASequence) -> SummaryMetaV1 | None:
        """Set up the sequence; look the simulator up once per run.

        With the simulator, the object images for the starting focus are computed here,
        so the first frame of a time-lapse is not delayed by them.
        """
        self._bench = _find_bench(self.mmcore)
        summary = super().setup_sequence(sequence)
        if self._bench is not None and self._bench.camera is not None:
            self._bench.camera.prepare_focus()
        return summary

    def teardown_sequence(self, sequence: MDASequence) -> None:
        """Tear down, and release a shutter opened for a finished stream."""
        try:
            super().teardown_sequence(sequence)
        finally:
            core = self.mmcore
            if not core.isSequenceRunning():
                core.stopSequenceAcquisition()

    def _set_event_z(self, event: MDAEvent) -> None:
        """Move the focus for ``event``; a failure names the device and the target."""
        try:
            super()._set_event_z(event)
        except Exception as exc:
            focus = self.mmcore.getFocusDevice()
            raise AcquisitionError(
                f"Focus device {focus!r} failed to move to z = {event.z_pos:g} µm "
                f"for event {dict(event.index)}: {str(exc).strip() or exc!r}"
            ) from exc

    def exec_single_event(self, event: MDAEvent) -> Iterator[PImagePayload | None]:
        """Snap one image; add the simulated camera's metadata; raise on failure."""
        frames = super().exec_single_event(event)
        with _SnapFailureCatcher() as catcher:
            # the snap happens when the first payload is requested
            first = next(frames, None)
        if first is None:
            if self.raise_on_snap_error:
                camera = self.mmcore.getCameraDevice()
                reason = f": {catcher.error}" if catcher.error is not None else ""
                raise AcquisitionError(
                    f"Camera {camera!r} failed to snap the frame for event "
                    f"{dict(event.index)}{reason}"
                ) from catcher.error
            return
        camera_metadata = self._simulated_camera_metadata()
        yield _with_camera_metadata(first, camera_metadata)
        for payload in frames:
            yield _with_camera_metadata(payload, camera_metadata)

    def _simulated_camera_metadata(self) -> dict[str, Any] | None:
        if self._bench is _NOT_LOOKED_UP:
            self._bench = _find_bench(self.mmcore)
        if self._bench is None:
            return None
        return dict(self._bench.camera.last_frame_metadata)


def _find_bench(core: CMMCorePlus) -> Any:
    """The simulator bench driving ``core``, or None for a real microscope."""
    try:
        from deepz_live.acquisition.simulator import bench_for
    except ImportError:
        return None
    return bench_for(core)


def _with_camera_metadata(
    payload: PImagePayload | None, camera_metadata: dict[str, Any] | None
) -> PImagePayload | None:
    if payload is not None and camera_metadata is not None:
        meta: Any = payload[2]
        meta.setdefault("camera_metadata", camera_metadata)
    return payload
