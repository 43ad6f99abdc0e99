"""One self-describing file per Deep-Z model.

A model file is a `safetensors <https://huggingface.co/docs/safetensors>`_ file: the
generator's ``state_dict`` as tensors, and in the header's metadata one entry,
``"deepz-live"``, holding the JSON of a :class:`ModelInfo` (architecture, the image
normalisation, the optics and pixel size it was trained for, the DPM scale, training
provenance and validation scores). Such a file can be inspected without building the
network (:func:`read_model_info`) and loading it never unpickles anything, so a
model file from a stranger cannot run code.

Names without a path (``"default"``) refer to models shipped in the package's
``models/`` folder (:func:`resolve_model_path`).
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import math
import numbers
import os
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepz_live.inference._errors import ModelFileError, ModelMismatchWarning
from deepz_live.inference._networks import GeneratorConfig, build_generator

if TYPE_CHECKING:
    import torch
    from torch import nn

FORMAT_VERSION = 1
"""Version of the metadata schema written by this code."""

METADATA_KEY = "deepz-live"
"""Key of the :class:`ModelInfo` JSON in the safetensors header metadata."""

MODEL_SUFFIX = ".safetensors"
DEFAULT_MODEL_NAME = "default"
LIVE_MODEL_NAME = "default-fast"
"""The bundled model live refocusing uses unless told otherwise: the fastest one that
meets the accuracy goals any bundled model meets (README, "Deep-Z models":
``default-fast`` matches ``default``'s scores at about 20× its speed on 2 CPU cores)."""
BUNDLED_MODELS_DIR = Path(__file__).with_name("models")
"""Folder of the models shipped with the package (``<name>.safetensors``)."""

_SUPPORTED_FORMAT_VERSIONS = (1,)
# How many key/shape problems to spell out before summarising the rest.
_MAX_LISTED = 5


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass(kw_only=True)
class ModelInfo:
    """Everything needed to use a model correctly, stored inside the model file.

    Parameters
    ----------
    format_version : int
        Version of this schema (:data:`FORMAT_VERSION`).
    name : str
        Human-readable model name.
    generator : dict
        ``GeneratorConfig.to_dict()``: enough to rebuild the network.
    normalization : dict
        How raw camera counts were normalised for training (offset, percentiles...);
        opaque here, interpreted by the dataset code.
    pixel_size_um : float
        Sample-plane pixel size of the training data, in µm.
    wavelength_um : float or None
        Emission wavelength of the training data, in µm, if known.
    na : float or None
        Numerical aperture of the objective used for the training data, if known.
    dz_range_um : float
        Largest |refocusing distance| seen in training, in µm; the model is not
        expected to extrapolate beyond it.
    dpm_scale_um : float
        The DPM channel holds ``dpm_um / dpm_scale_um``.
    training : dict
        Provenance: data fingerprints (``[{"source", "sha256"}, ...]``), epochs,
        seed, losses, command line...
    validation : dict
        Validation metrics (e.g. per |dz| bin).
    created : str
        ISO 8601 creation time.
    software : dict
        Versions of deepz-live, torch and safetensors that wrote the file
        (:func:`save_model` fills in missing entries).
    """

    format_version: int = FORMAT_VERSION
    name: str
    generator: dict[str, Any]
    normalization: dict[str, Any]
    pixel_size_um: float
    wavelength_um: float | None = None
    na: float | None = None
    dz_range_um: float
    dpm_scale_um: float
    training: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=_now_iso)
    software: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.format_version, int) or isinstance(
            self.format_version, bool
        ):
            raise ValueError(
                f"format_version must be an integer, got {self.format_version!r}"
            )
        if not isinstance(self.name, str):
            raise ValueError(f"name must be a string, got {self.name!r}")
        for name in ("generator", "normalization", "training", "validation"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a dict, got {getattr(self, name)!r}")
        if not isinstance(self.software, dict):
            raise ValueError(f"software must be a dict, got {self.software!r}")
        _check_positive("pixel_size_um", self.pixel_size_um)
        _check_positive("dpm_scale_um", self.dpm_scale_um)
        _check_positive("dz_range_um", self.dz_range_um, allow_zero=True)
        for name in ("wavelength_um", "na"):
            if getattr(self, name) is not None:
                _check_positive(name, getattr(self, name))
        if not isinstance(self.created, str):
            raise ValueError(
                f"created must be an ISO time string, got {self.created!r}"
            )

    @property
    def generator_config(self) -> GeneratorConfig:
        """The generator architecture as a :class:`GeneratorConfig`."""
        return GeneratorConfig.from_dict(self.generator)

    def to_dict(self) -> dict[str, Any]:
        """Return the information as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInfo:
        """Build from :meth:`to_dict` output.

        Raises
        ------
        ValueError
            If fields are missing, unknown or invalid.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"model info must be a JSON object, got {data!r}")
        names = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown model info field(s) {unknown}")
        required = {
            item.name
            for item in dataclasses.fields(cls)
            if item.default is dataclasses.MISSING
            and item.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(data))
        if missing:
            raise ValueError(f"model info lacks field(s) {missing}")
        return cls(**data)

    def to_json(self) -> str:
        """Return the information as a JSON string."""
        # NaN and ±Infinity stay allowed (Python's json reads them back): a PSNR of
        # inf for a perfect validation pair must not make a finished training fail
        # to save.
        return json.dumps(self.to_dict(), sort_keys=True, default=_json_default)

    @classmethod
    def from_json(cls, text: str) -> ModelInfo:
        """Build from :meth:`to_json` output (ValueError if it does not parse)."""
        return cls.from_dict(json.loads(text))


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays (and 0-d tensors) often end up in metrics dicts.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _check_positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    valid_type = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if (
        not valid_type
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a {kind} number, got {value!r}")


def bundled_model_names() -> list[str]:
    """Return the names of the models shipped with this version (maybe none)."""
    if not BUNDLED_MODELS_DIR.is_dir():
        return []
    return sorted(path.stem for path in BUNDLED_MODELS_DIR.glob(f"*{MODEL_SUFFIX}"))


def _package_version() -> str:
    try:
        return importlib.metadata.version("deepz-live")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _looks_like_path(name: str) -> bool:
    return (
        "/" in name
        or os.sep in name
        or name.startswith(".")
        or name.endswith(MODEL_SUFFIX)
    )


def resolve_model_path(name_or_path: str | os.PathLike[str]) -> Path:
    """Turn a bundled model name or a file path into the path of an existing file.

    A string without a directory separator and without the ``.safetensors`` suffix
    (e.g. ``"default"``) names a model shipped with the package; anything else is a
    path. (Write ``./name`` for a file in the current folder.)

    Raises
    ------
    ModelFileError
        If no bundled model has that name, or no file exists at the path.
    """
    if isinstance(name_or_path, str) and not _looks_like_path(name_or_path):
        path = BUNDLED_MODELS_DIR / f"{name_or_path}{MODEL_SUFFIX}"
        if path.is_file():
            return path
        available = bundled_model_names()
        shipped = (
            f"bundled models: {', '.join(available)}"
            if available
            else "this version ships no bundled models"
        )
        raise ModelFileError(
            f"no bundled model named {name_or_path!r} ships with deepz-live "
            f"{_package_version()} ({shipped}). Deep-Z models are specific to one "
            "objective, pixel size and wavelength, and none are published: train "
            "one from z-stacks recorded on your microscope with `deepz train` and "
            "pass the path of the .safetensors file it writes (for a file in the "
            f"current folder, write ./{name_or_path})."
        )
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise ModelFileError(f"no model file at {path}")
    if not path.is_file():
        raise ModelFileError(f"{path} is not a file (expected a .safetensors model)")
    return path


def _read_metadata(path: Path) -> ModelInfo:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata()
    except Exception as error:
        # safetensors raises its own SafetensorError (and OSError, ValueError...)
        # for anything it cannot parse; all mean "unreadable model file".
        raise ModelFileError(
            f"{path} is not a readable safetensors file (corrupt, truncated or "
            f"another format): {error}"
        ) from error
    if not metadata or METADATA_KEY not in metadata:
        raise ModelFileError(
            f"{path} is a safetensors file but not a deepz-live model: its header "
            f"has no {METADATA_KEY!r} metadata"
        )
    try:
        raw = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as error:
        raise ModelFileError(
            f"{path}: the {METADATA_KEY!r} metadata is not valid JSON: {error}"
        ) from error
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if version not in _SUPPORTED_FORMAT_VERSIONS:
        raise ModelFileError(
            f"{path} has model format version {version!r}; deepz-live "
            f"{_package_version()} reads version(s) "
            f"{', '.join(map(str, _SUPPORTED_FORMAT_VERSIONS))}. Upgrade deepz-live "
            "to use this model."
        )
    try:
        info = ModelInfo.from_dict(raw)
        # Validate the architecture now, not when a network is first built.
        GeneratorConfig.from_dict(info.generator)
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{path}: invalid model information: {error}") from error
    return info


def read_model_info(name_or_path: str | os.PathLike[str]) -> ModelInfo:
    """Read a model's :class:`ModelInfo` without loading its weights.

    Parameters
    ----------
    name_or_path : str or path-like
        A bundled model name or a model file (see :func:`resolve_model_path`).

    Raises
    ------
    ModelFileError
        If the file is missing, unreadable, not a deepz-live model or of an
        unsupported format version.
    """
    return _read_metadata(resolve_model_path(name_or_path))


def _state_dict_problems(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]
) -> list[str]:
    """Describe how ``found`` tensors differ from ``expected`` in names and shapes."""
    problems = []
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    wrong_shape = [
        f"{key} {tuple(found[key].shape)} instead of {tuple(expected[key].shape)}"
        for key in expected
        if key in found and tuple(found[key].shape) != tuple(expected[key].shape)
    ]
    for label, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", wrong_shape),
    ):
        if items:
            listed = ", ".join(items[:_MAX_LISTED])
            more = (
                f" and {len(items) - _MAX_LISTED} more"
                if len(items) > _MAX_LISTED
                else ""
            )
            problems.append(f"{label}: {listed}{more}")
    return problems


def _expected_state_dict(config: GeneratorConfig) -> dict[str, torch.Tensor]:
    import torch

    # Meta tensors have shapes but no storage: checking costs no memory.
    with torch.device("meta"):
        return build_generator(config).state_dict()


def save_model(
    path: str | os.PathLike[str],
    generator: nn.Module | Mapping[str, torch.Tensor],
    info: ModelInfo,
    *,
    weights_dtype: str = "float32",
) -> ModelInfo:
    """Write a generator and its :class:`ModelInfo` to one safetensors file.

    The file is written next to its destination and renamed into place, so an
    interrupted save never leaves a half-written model behind.

    Parameters
    ----------
    path : str or path-like
        Destination, conventionally ending in ``.safetensors``.
    generator : torch.nn.Module or mapping of str to torch.Tensor
        The generator module or its ``state_dict``.
    info : ModelInfo
        Model description; ``info.generator`` must describe ``generator``.
    weights_dtype : {"float32", "float16"}
        How floating-point weights are stored. ``float16`` halves the file (weights
        keep ~3 significant digits); they are loaded back into float32 networks.
        Recorded as ``info.training["stored_weights_dtype"]``.

    Returns
    -------
    ModelInfo
        The information as written (with ``software`` versions filled in).

    Raises
    ------
    ValueError
        If the weights do not fit ``info.generator``.
    """
    import safetensors
    import torch
    from safetensors.torch import save_file

    config = info.generator_config
    module_config = getattr(generator, "config", None)
    if isinstance(module_config, GeneratorConfig) and module_config != config:
        raise ValueError(
            f"the generator's config {module_config} differs from info.generator "
            f"{config}"
        )
    state = (
        generator.state_dict() if isinstance(generator, torch.nn.Module) else generator
    )
    problems = _state_dict_problems(_expected_state_dict(config), state)
    if problems:
        raise ValueError(
            "the weights do not match info.generator: " + "; ".join(problems)
        )
    software = {
        "deepz-live": _package_version(),
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
    }
    software.update(info.software)
    if weights_dtype not in ("float32", "float16"):
        raise ValueError(
            f"weights_dtype must be 'float32' or 'float16', got {weights_dtype!r}"
        )
    store = getattr(torch, weights_dtype)
    written = dataclasses.replace(
        info,
        software=software,
        training={**info.training, "stored_weights_dtype": weights_dtype},
    )
    # safetensors refuses views and shared storage: give it plain CPU copies.
    tensors = {
        key: (
            value.detach().to("cpu", store if value.is_floating_point() else None)
        ).contiguous()
        for key, value in state.items()
    }
    destination = Path(path)
    handle, temporary = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp"
    )
    os.close(handle)
    try:
        save_file(tensors, temporary, metadata={METADATA_KEY: written.to_json()})
        # mkstemp makes the file private (0600); give it the usual permissions
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return written


def load_model(
    name_or_path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelInfo]:
    """Load a generator and its :class:`ModelInfo` from a model file.

    Parameters
    ----------
    name_or_path : str or path-like
        A bundled model name or a model file (see :func:`resolve_model_path`).
    device : str or torch.device
        Where to put the network.

    Returns
    -------
    (torch.nn.Module, ModelInfo)
        The generator, in eval mode, and its description.

    Raises
    ------
    ModelFileError
        If the file is missing, unreadable, not a deepz-live model, of an
        unsupported format version, its weights do not fit its architecture, or a
        weight is NaN or infinite.
    """
    from safetensors.torch import load_file

    path = resolve_model_path(name_or_path)
    info = _read_metadata(path)
    config = info.generator_config
    try:
        state = load_file(str(path), device="cpu")
    except Exception as error:
        # The header can be intact while the tensor data is not.
        raise ModelFileError(f"{path}: cannot read the weights: {error}") from error
    generator = build_generator(config)
    problems = _state_dict_problems(generator.state_dict(), state)
    if problems:
        raise ModelFileError(
            f"{path}: the weights do not match the architecture recorded in the "
            f"file ({config}): " + "; ".join(problems)
        )
    _check_finite(path, state)
    generator.load_state_dict(state, strict=True)
    return generator.to(device).eval(), info


def _check_finite(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    """Refuse weights that are NaN or infinite: every output would be NaN."""
    import torch

    bad = {
        key: int(tensor.numel() - torch.isfinite(tensor).sum())
        for key, tensor in state.items()
        if tensor.is_floating_point()
    }
    bad = {key: count for key, count in bad.items() if count}
    if bad:
        listed = ", ".join(f"{key} ({count})" for key, count in list(bad.items())[:3])
        more = f" and {len(bad) - 3} more tensors" if len(bad) > 3 else ""
        raise ModelFileError(
            f"{path}: {sum(bad.values())} weights are NaN or infinite (in "
            f"{listed}{more}), so every refocused plane would be NaN. The file is "
            "damaged or its training diverged: use another model file, or train "
            "again (deepz train)."
        )


def check_finite_weights(name_or_path: str | os.PathLike[str]) -> None:
    """Check that a model file's weights are all finite, without building a network.

    :func:`load_model` checks this too; backends that never load the generator into
    torch (ONNX Runtime, TensorRT) call this once instead.

    Parameters
    ----------
    name_or_path : str or path-like
        A bundled model name or a model file (see :func:`resolve_model_path`).

    Raises
    ------
    ModelFileError
        The file is missing or unreadable, or a weight is NaN or infinite.
    """
    from safetensors.torch import load_file

    path = resolve_model_path(name_or_path)
    try:
        state = load_file(str(path), device="cpu")
    except Exception as error:
        raise ModelFileError(f"{path}: cannot read the weights: {error}") from error
    _check_finite(path, state)


def check_compatibility(
    info: ModelInfo,
    *,
    pixel_size_um: float | None = None,
    wavelength_um: float | None = None,
    na: float | None = None,
    rel_tol: float = 0.1,
    strict: bool = False,
) -> list[str]:
    """Check that data resemble what a model was trained on.

    A Deep-Z network learns the defocus of one objective at one pixel size and
    wavelength; on other data its refocusing distances and blur are wrong. Each
    property given here is compared with the model's; a property the model does not
    record is not checked.

    Parameters
    ----------
    info : ModelInfo
        The model's description.
    pixel_size_um, wavelength_um, na : float, optional
        The data's sample-plane pixel size (µm), emission wavelength (µm) and the
        objective's numerical aperture.
    rel_tol : float
        Largest accepted relative difference, ``|data − model| / model``.
    strict : bool
        Raise instead of warning.

    Returns
    -------
    list of str
        One message per mismatch (empty when compatible).

    Warns
    -----
    ModelMismatchWarning
        For each mismatch, unless ``strict``.

    Raises
    ------
    ModelFileError
        If ``strict`` and anything mismatches.
    """
    checks = (
        (
            "sample-plane pixel size",
            pixel_size_um,
            info.pixel_size_um,
            "µm",
            "resample the images to {model} µm/pixel (or change the magnification "
            "or binning), or train a model on data at {data} µm/pixel",
        ),
        (
            "emission wavelength",
            wavelength_um,
            info.wavelength_um,
            "µm",
            "image in the model's emission band, or train a model at {data} µm",
        ),
        (
            "numerical aperture",
            na,
            info.na,
            "",
            "use the objective the model was trained with, or train a model with "
            "this objective",
        ),
    )
    messages = []
    for label, data_value, model_value, unit, advice in checks:
        if data_value is None or model_value is None:
            continue
        difference = abs(data_value - model_value) / model_value
        if difference > rel_tol:
            unit_text = f" {unit}" if unit else ""
            messages.append(
                f"the data's {label} is {data_value:g}{unit_text} but model "
                f"{info.name!r} was trained at {model_value:g}{unit_text} "
                f"({difference:.0%} apart, tolerance {rel_tol:.0%}): "
                + advice.format(model=f"{model_value:g}", data=f"{data_value:g}")
            )
    if messages and strict:
        raise ModelFileError("; ".join(messages))
    for message in messages:
        warnings.warn(message, ModelMismatchWarning, stacklevel=2)
    return messages
