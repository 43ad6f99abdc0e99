"""Opening and closing a microscope.

`open_microscope` loads a Micro-Manager ``.cfg`` (C++ adapters and Python devices
mixed, through `acquisition._core.DeepzCore`) and turns every way that can go wrong
into a `ConfigError` that names the file, the line and the fix.

Lifetime
--------
A core that ran an MDA and is still alive when the interpreter finalises can abort
the process (``FATAL: exception not rethrown``, exit 134; about one run in five here):
a C++ thread calls into Python while Python is shutting down. `Microscope.close`
prevents it by unloading every device, dropping the core and collecting garbage while
the interpreter is still whole. The same teardown is registered with
`weakref.finalize`, which holds the `Microscope` only weakly and runs at exit for
every microscope still open, so scripts that never call `close()` exit cleanly too.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import math
import re
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from deepz_live.acquisition._core import DeepzCore
from deepz_live.acquisition._engine import DeepzEngine
from deepz_live.acquisition._errors import AcquisitionError, ConfigError, DeepzError

if TYPE_CHECKING:
    from types import TracebackType

    import numpy as np
    from typing_extensions import Self

__all__ = [
    "CONFIG_DIR",
    "SIMULATOR_CONFIG",
    "SPECIMEN_DEVICE",
    "Microscope",
    "open_microscope",
]

_log = logging.getLogger(__name__)

# The shipped .cfg files are data beside the layers (``hardware_configs/`` in a
# checkout, ``deepz_live/hardware_configs/`` in a wheel), not an importable package.
CONFIG_DIR = Path(__file__).parent.parent / "hardware_configs"
"""Folder of the Micro-Manager configuration files shipped with deepz-live."""

SIMULATOR_CONFIG = CONFIG_DIR / "simulator.cfg"
"""The simulated microscope's configuration (Python devices, no hardware)."""

SPECIMEN_DEVICE = "Specimen"
"""Label of the (simulated) specimen device whose ``FocusZ`` is the in-focus plane."""

_LINE_ERROR = re.compile(r"at line (\d+):")
_PY_PREFIX = "#py "


class _CoreBox:
    """Holds the core so that teardown can drop the last reference to it."""

    __slots__ = ("core",)

    def __init__(self, core: DeepzCore) -> None:
        self.core: DeepzCore | None = core


def _release_core(box: _CoreBox) -> None:
    """Stop acquisition, unload every device and let the core be collected."""
    core, box.core = box.core, None
    if core is None:
        return
    try:
        if core.mda.is_running():
            core.mda.cancel()
            deadline = time.monotonic() + 5.0
            while core.mda.is_running() and time.monotonic() < deadline:
                time.sleep(0.01)
        if core.isSequenceRunning():
            core.stopSequenceAcquisition()
        core.unloadAllDevices()
    except Exception:  # teardown must go on; the devices are gone either way
        _log.exception("Error while closing the microscope")
    finally:
        del core
        gc.collect()


class Microscope:
    """An opened microscope: a loaded `DeepzCore` and the config it came from.

    Use `open_microscope` to create one. Close it with `close()` or a ``with`` block;
    a microscope left open is closed automatically at interpreter exit.

    Parameters
    ----------
    core : DeepzCore
        A core with the configuration already loaded.
    config_path : Path
        The configuration file that was loaded.
    """

    def __init__(self, core: DeepzCore, config_path: Path) -> None:
        self._box = _CoreBox(core)
        self._config_path = config_path
        # Holds the Microscope weakly, the box strongly; runs once, at close() or at
        # interpreter exit, whichever comes first.
        self._finalizer = weakref.finalize(self, _release_core, self._box)

    # -- lifetime --------------------------------------------------------------------
    @property
    def core(self) -> DeepzCore:
        """The Micro-Manager core. Raises `DeepzError` once the microscope is closed."""
        core = self._box.core
        if core is None:
            raise DeepzError(
                "This microscope has been closed; open it again with open_microscope()."
            )
        return core

    @property
    def config_path(self) -> Path:
        """The configuration file this microscope was loaded from."""
        return self._config_path

    @property
    def closed(self) -> bool:
        """Whether `close()` has run."""
        return self._box.core is None

    def close(self) -> None:
        """Stop any acquisition, unload all devices and release the core.

        Calling it again does nothing.
        """
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Microscope {self._config_path.name!r} ({state})>"

    # -- imaging ---------------------------------------------------------------------
    def snap(self) -> np.ndarray:
        """Acquire one image with the current settings.

        Returns
        -------
        numpy.ndarray
            The image, shape ``(height, width)``.
        """
        core = self.core
        try:
            core.snapImage()
            return core.getImage()
        except Exception as exc:
            raise AcquisitionError(
                f"Camera {core.getCameraDevice()!r} failed to snap an image: "
                f"{_first_line(exc)}. Check the camera's properties and connection."
            ) from exc

    # -- focus -----------------------------------------------------------------------
    @property
    def focus_device(self) -> str:
        """Label of the focus (Z) device."""
        return self.core.getFocusDevice()

    def focus_limits(self) -> tuple[float, float] | None:
        """Travel limits of the focus device in µm, if the device reports them.

        Read from the ``LowerLimit`` / ``UpperLimit`` properties of the focus device
        (the simulator's ``Z`` has them; most C++ stages do not).

        Returns
        -------
        tuple of float or None
            ``(lower, upper)`` in µm, or None when the stage does not say.
        """
        core = self.core
        focus = core.getFocusDevice()
        if not (
            core.hasProperty(focus, "LowerLimit")
            and core.hasProperty(focus, "UpperLimit")
        ):
            return None
        try:
            lower = float(core.getProperty(focus, "LowerLimit"))
            upper = float(core.getProperty(focus, "UpperLimit"))
        except (RuntimeError, ValueError):
            return None
        return (lower, upper)

    def move_focus(self, z_um: float) -> float:
        """Move the focus device to ``z_um`` and wait until it gets there.

        Parameters
        ----------
        z_um : float
            Target position in µm.

        Returns
        -------
        float
            The position the focus device reports after the move.
        """
        core = self.core
        focus = core.getFocusDevice()
        if not math.isfinite(z_um):
            raise AcquisitionError(f"Focus position must be a number, got {z_um}.")
        limits = self.focus_limits()
        if limits is not None and not limits[0] <= z_um <= limits[1]:
            raise AcquisitionError(
                f"z = {z_um:g} µm is outside the travel of focus device {focus!r} "
                f"({limits[0]:g} to {limits[1]:g} µm); choose a position inside it."
            )
        try:
            core.setPosition(focus, z_um)
            core.waitForDevice(focus)
            return float(core.getPosition(focus))
        except Exception as exc:
            raise AcquisitionError(
                f"Focus device {focus!r} could not move to z = {z_um:g} µm: "
                f"{_first_line(exc)}"
            ) from exc

    def focus_on_specimen(self) -> float | None:
        """Move the focus to the specimen's in-focus plane, when the scope knows it.

        A device labelled ``Specimen`` with a ``FocusZ`` property (the simulator has
        one) gives the plane; on a scope without it this does nothing.

        Returns
        -------
        float or None
            The z (µm) moved to, or None when there is no ``Specimen`` device.
        """
        core = self.core
        if SPECIMEN_DEVICE not in core.getLoadedDevices() or not core.hasProperty(
            SPECIMEN_DEVICE, "FocusZ"
        ):
            return None
        z_um = float(core.getProperty(SPECIMEN_DEVICE, "FocusZ"))
        self.move_focus(z_um)
        return z_um

    # -- properties ------------------------------------------------------------------
    def set_property(self, device: str, prop: str, value: str) -> None:
        """Set a device property, with an error that says what would be accepted.

        Parameters
        ----------
        device, prop : str
            Device label and property name.
        value : str
            The new value, as text (Micro-Manager converts it).

        Raises
        ------
        ConfigError
            Unknown device or property, read-only property, or a value the device
            refuses.
        """
        core = self.core
        loaded = list(core.getLoadedDevices())
        if device not in loaded:
            raise ConfigError(
                f"No device {device!r} in this configuration; loaded devices: "
                f"{', '.join(loaded)}."
            )
        props = list(core.getDevicePropertyNames(device))
        if prop not in props:
            raise ConfigError(
                f"Device {device!r} has no property {prop!r}; its properties: "
                f"{', '.join(props)}."
            )
        if core.isPropertyReadOnly(device, prop):
            raise ConfigError(f"Property {device}.{prop} is read-only.")
        allowed = list(core.getAllowedPropertyValues(device, prop))
        if allowed and value not in allowed:
            raise ConfigError(
                f"{value!r} is not allowed for {device}.{prop}; choose one of "
                f"{', '.join(allowed)}."
            )
        if core.hasPropertyLimits(device, prop):
            low = core.getPropertyLowerLimit(device, prop)
            high = core.getPropertyUpperLimit(device, prop)
            try:
                number = float(value)
            except ValueError:
                raise ConfigError(
                    f"{device}.{prop} takes a number between {low:g} and {high:g}, "
                    f"got {value!r}."
                ) from None
            if not low <= number <= high:
                raise ConfigError(
                    f"{device}.{prop} = {value} is outside its limits "
                    f"({low:g} to {high:g})."
                )
        try:
            core.setProperty(device, prop, value)
        except Exception as exc:
            raise ConfigError(
                f"Setting {device}.{prop} to {value!r} failed: {_first_line(exc)}"
            ) from exc


def open_microscope(config: str | Path | None = None) -> Microscope:
    """Load a Micro-Manager configuration and return the opened microscope.

    Parameters
    ----------
    config : str, Path or None
        A ``.cfg`` file. None loads the simulated microscope
        (`SIMULATOR_CONFIG`).

    Returns
    -------
    Microscope
        The opened microscope, with `DeepzEngine` installed as its MDA engine.

    Raises
    ------
    ConfigError
        The file is missing or malformed, a device adapter is not installed, or the
        configuration has no camera or no focus (Z) device.
    """
    path = _config_path(config)
    core = DeepzCore()
    box = _CoreBox(core)
    del core  # the box owns it, so a failed load can release it completely
    try:
        _load(box.core, path)  # type: ignore[arg-type]
        _require_roles(box.core, path)  # type: ignore[arg-type]
    except BaseException:
        _release_core(box)
        raise
    assert box.core is not None
    box.core.mda.set_engine(DeepzEngine(box.core))
    scope = Microscope(box.core, path)
    box.core = None
    return scope


# -- helpers -------------------------------------------------------------------------
def _config_path(config: str | Path | None) -> Path:
    if config is None:
        config = SIMULATOR_CONFIG
    path = Path(config).expanduser()
    if not path.is_file():
        where = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(
            f"Micro-Manager configuration {path.resolve()} {where}; pass the path of "
            "an existing .cfg file (omit --config to use the simulator)."
        )
    return path.resolve()


def _load(core: DeepzCore, path: Path) -> None:
    try:
        core.loadSystemConfiguration(path)
    except Exception as exc:
        raise _explain_load_error(exc, path, core) from exc


def _explain_load_error(exc: Exception, path: Path, core: DeepzCore) -> ConfigError:
    """Turn pymmcore-plus's config error into one that names the line and the fix."""
    match = _LINE_ERROR.search(str(exc))
    if match is None:
        return ConfigError(
            f"Could not load Micro-Manager configuration {path}: {_first_line(exc)}"
        )
    line_no = int(match.group(1))
    try:
        line = path.read_text().splitlines()[line_no - 1].strip()
    except (OSError, IndexError):
        line = ""
    where = f"{path}, line {line_no} ({line!r})"
    reason = _root_reason(exc)
    is_python_line = line.startswith(_PY_PREFIX)
    fields = [f.strip() for f in line.removeprefix(_PY_PREFIX).split(",")]
    if fields[0] in {"Device", "pyDevice"} and len(fields) == 4:
        label, library, _ = fields[1:]
        if not _library_available(core, library):
            if is_python_line or fields[0] == "pyDevice" or "." in library:
                return ConfigError(
                    f"{where}: Python module {library!r} for device {label!r} cannot "
                    "be imported. Install the package that provides it, or fix the "
                    "module path."
                )
            return ConfigError(
                f"{where}: Micro-Manager device adapter {library!r} (for device "
                f"{label!r}) is not installed. Micro-Manager's C++ device adapters "
                "are installed with `mmcore install` (needs internet), or point "
                "MICROMANAGER_PATH at an existing Micro-Manager installation."
            )
    return ConfigError(f"{where}: {reason}. Fix or comment out that line.")


def _library_available(core: DeepzCore, library: str) -> bool:
    """Whether ``library`` is an installed C++ adapter or an importable module."""
    try:
        if library in core.getDeviceAdapterNames():
            return True
    except Exception:  # no adapter search path at all
        pass
    try:
        return importlib.util.find_spec(library) is not None
    except (ImportError, ValueError):
        return False


def _root_reason(exc: BaseException) -> str:
    """The message of the error that started it (pymmcore-plus wraps it twice)."""
    cause = exc
    for _ in range(2):
        if cause.__cause__ is None:
            break
        cause = cause.__cause__
    text = _first_line(cause).rstrip(". ")
    return re.sub(r"^Error executing command '\w+' with arguments \[.*?\]: ", "", text)


def _require_roles(core: DeepzCore, path: Path) -> None:
    loaded = [d for d in core.getLoadedDevices() if d != "Core"]
    devices = ", ".join(loaded) or "none"
    if not core.getCameraDevice():
        raise ConfigError(
            f"{path} defines no camera (loaded devices: {devices}). Load a camera "
            "device and make it the core camera with 'Property,Core,Camera,<label>'."
        )
    if not core.getFocusDevice():
        raise ConfigError(
            f"{path} defines no focus (Z) device (loaded devices: {devices}). Load a "
            "Z stage and make it the focus device with "
            "'Property,Core,Focus,<label>'."
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
