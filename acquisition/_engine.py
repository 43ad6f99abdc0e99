"""The MDA engine used by deepz-live: pymmcore-plus's engine with repairs.

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

Only public seams of pymmcore-plus 0.18 are used: the `PMDAEngine` methods
``setup_sequence``, ``setup_event`` and ``teardown_sequence``, and
``exec_single_event``, which `MDAEngine` documents as the method to override for
single snaps. Two behaviours of the engine are relied on: a failed snap yields no
image payload (pymmcore-plus logs the error instead of raising it), and an event's
focus move goes through the core's ``setPosition``. The causes come from the core
(`DeepzCore.last_snap_error`, `DeepzCore.last_move_failure`), not from the log.
The engine tests in ``tests/acquisition/test_scope.py`` pin both, so an upstream
change fails there first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from pymmcore_plus.mda import MDAEngine

from deepz_live.acquisition._bench import simulator_bench
from deepz_live.acquisition._core import DeepzCore
from deepz_live.acquisition._errors import AcquisitionError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from numpy.typing import NDArray
    from pymmcore_plus import CMMCorePlus
    from pymmcore_plus.metadata import FrameMetaV1, SummaryMetaV1
    from useq import MDAEvent, MDASequence

    # what MDAEngine.exec_event yields per image (pymmcore-plus's PImagePayload)
    ImagePayload = tuple[NDArray[Any], MDAEvent, FrameMetaV1]

__all__ = ["DeepzEngine"]

_NOT_LOOKED_UP = object()


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
        self._bench = simulator_bench(self.mmcore)
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

    def setup_event(self, event: MDAEvent) -> None:
        """Set the hardware up for ``event``; a failed focus move names itself."""
        try:
            super().setup_event(event)
        except Exception as exc:
            error = _focus_move_error(self.mmcore, event, exc)
            if error is None:
                raise
            raise error from exc

    def exec_single_event(self, event: MDAEvent) -> Iterator[ImagePayload | None]:
        """Snap one image; add the simulated camera's metadata; raise on failure."""
        frames = super().exec_single_event(event)
        # the snap happens when the first payload is requested; a failed one yields
        # no payload at all (pymmcore-plus 0.18 logs the error instead of raising)
        first = next(frames, None)
        if first is None:
            if self.raise_on_snap_error:
                _raise_snap_error(self.mmcore, event)
            return
        camera_metadata = self._simulated_camera_metadata()
        yield _with_camera_metadata(first, camera_metadata)
        for payload in frames:
            yield _with_camera_metadata(payload, camera_metadata)

    def _simulated_camera_metadata(self) -> dict[str, Any] | None:
        if self._bench is _NOT_LOOKED_UP:
            self._bench = simulator_bench(self.mmcore)
        if self._bench is None or self._bench.camera is None:
            return None
        return dict(self._bench.camera.last_frame_metadata)


def _raise_snap_error(core: CMMCorePlus, event: MDAEvent) -> NoReturn:
    """Raise for a snap that yielded no image, with its cause when the core knows it."""
    camera = core.getCameraDevice()
    cause = core.last_snap_error if isinstance(core, DeepzCore) else None
    reason = f": {cause}" if cause is not None else ""
    raise AcquisitionError(
        f"Camera {camera!r} failed to snap the frame for event "
        f"{dict(event.index)}{reason}"
    ) from cause


def _focus_move_error(
    core: CMMCorePlus, event: MDAEvent, exc: BaseException
) -> AcquisitionError | None:
    """An error naming the focus device, when its move for ``event`` raised ``exc``."""
    failure = core.last_move_failure if isinstance(core, DeepzCore) else None
    if (
        failure is None
        or failure.stage != core.getFocusDevice()
        or not _raised_from(exc, failure.error)
    ):
        return None
    reason = str(failure.error).strip() or repr(failure.error)
    return AcquisitionError(
        f"Focus device {failure.stage!r} failed to move to z = "
        f"{failure.target_um:g} µm for event {dict(event.index)}: {reason}"
    )


def _raised_from(exc: BaseException, cause: BaseException) -> bool:
    """Whether ``exc`` is ``cause`` or was raised while handling it."""
    seen: BaseException | None = exc
    while seen is not None:
        if seen is cause:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _with_camera_metadata(
    payload: ImagePayload | None, camera_metadata: dict[str, Any] | None
) -> ImagePayload | None:
    if payload is not None and camera_metadata is not None:
        meta: Any = payload[2]
        meta.setdefault("camera_metadata", camera_metadata)
    return payload
