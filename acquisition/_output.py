"""What every writer shares: open once, append, close once, with clear errors.

`OutputFile` is the base of the raw-frame writers (`_frames`) and of the volume
writers (`_volumes`). It refuses to replace an existing output unless asked, turns an
`OSError` while creating the output into an `OutputLocationError` that says what to
check, closes exactly once and works as a context manager. `jsonable` and
`positive_or_none` are the clean-ups every writer applies to the metadata it stores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from deepz_live.acquisition._errors import OutputLocationError

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

    from typing_extensions import Self

__all__ = ["OutputFile", "jsonable", "positive_or_none"]


class OutputFile:
    """What frame and volume writers share: open once, append, close once.

    Subclasses set ``path`` and ``_closed = False``, call `_create_output`, and
    implement ``_open`` (create the file; an OSError becomes an
    `OutputLocationError`), ``_write`` (one frame or volume) and ``_finish``.
    """

    path: Path
    _closed: bool
    _overwrite: bool

    @property
    def closed(self) -> bool:
        """Whether `close()` has run."""
        return self._closed

    def close(self) -> None:
        """Finish the output. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._finish()

    def _create_output(self, overwrite: bool, what: str) -> None:
        """Open ``self.path`` via ``self._open()``, with the errors users need.

        An existing file is refused unless ``overwrite``; an OS error (missing folder,
        no permission) becomes an `OutputLocationError` that says what to check.
        """
        path = self.path
        if path.exists() and not overwrite:
            raise OutputLocationError(
                f"{path} already exists; choose another {what} or allow overwriting "
                "(--overwrite)."
            )
        self._overwrite = overwrite
        try:
            self._open()
        except OSError as exc:
            raise OutputLocationError(
                f"Cannot create {path}: {exc.strerror or exc}. Check that the folder "
                "exists and is writable."
            ) from exc

    def _open(self) -> None:
        raise NotImplementedError

    def _write(self, data: np.ndarray, meta: dict[str, Any]) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays, Paths and tuples converted."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def positive_or_none(value: float | None) -> float | None:
    """``value`` as a float when it is a positive length, else None (unknown)."""
    if value is None or not value > 0:
        return None
    return float(value)
