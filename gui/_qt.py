"""The one place that checks for Qt and the panel's other GUI packages.

Every other module of `gui` is imported only after this one succeeded, so a machine
without a Qt binding (or without vispy) gets one readable line instead of a traceback.
"""

from __future__ import annotations

import importlib

INSTALL_HINT = (
    'The deepz panel needs Qt: install it with  pip install "deepz-live[gui]"'
)

# qtpy's QtCore fails without a binding (PySide6, PyQt6...): QtBindingsNotFoundError
# is an ImportError. vispy draws the views, superqt and cmap serve the controls.
_REQUIRED = ("qtpy.QtCore", "vispy.scene", "superqt", "cmap")


class QtMissingError(ImportError):
    """A package the panel needs (a Qt binding, vispy...) is not installed."""


def require_qt() -> None:
    """Raise `QtMissingError` with a one-line install hint when a package is missing."""
    name = ""
    try:
        for name in _REQUIRED:
            importlib.import_module(name)
    except ImportError as error:
        raise QtMissingError(f"{INSTALL_HINT} ({name}: {error})") from error


require_qt()
