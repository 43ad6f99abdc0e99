"""Deep-Z models: datasets from z-stacks, networks, training, evaluation, model files.

Works on arrays and files only: this layer never imports ``acquisition``, ``gui`` or
Qt, and torch is imported only when a network is built or run.
"""

from ._errors import (
    InferenceError,
    ModelFileError,
    ModelMismatchWarning,
    ModelQualityWarning,
    StackFormatError,
)
from ._evaluate import BinMetrics, EvaluationResult, evaluate_stacks, plot_evaluation
from ._export import export_onnx
from ._metrics import nrmse, psnr, ssim
from ._modelfile import (
    DEFAULT_MODEL_NAME,
    LIVE_MODEL_NAME,
    ModelInfo,
    bundled_model_names,
    check_compatibility,
    load_model,
    read_model_info,
    resolve_model_path,
    save_model,
)
from ._networks import (
    DiscriminatorConfig,
    GeneratorConfig,
    build_discriminator,
    build_generator,
    estimate_gflops,
    required_multiple,
)
from ._normalize import Normalization
from ._pairs import PairConfig, PairSampler, target_for_dpm
from ._refocuser import Refocuser
from ._register import estimate_shift, register_pair
from ._stacks import ZStack, read_stacks
from ._train import TrainConfig, Trainer

__all__ = [
    "DEFAULT_MODEL_NAME",
    "LIVE_MODEL_NAME",
    "BinMetrics",
    "DiscriminatorConfig",
    "EvaluationResult",
    "GeneratorConfig",
    "InferenceError",
    "ModelFileError",
    "ModelInfo",
    "ModelMismatchWarning",
    "ModelQualityWarning",
    "Normalization",
    "PairConfig",
    "PairSampler",
    "Refocuser",
    "StackFormatError",
    "TrainConfig",
    "Trainer",
    "ZStack",
    "build_discriminator",
    "build_generator",
    "bundled_model_names",
    "check_compatibility",
    "estimate_gflops",
    "estimate_shift",
    "evaluate_stacks",
    "export_onnx",
    "load_model",
    "nrmse",
    "plot_evaluation",
    "psnr",
    "read_model_info",
    "read_stacks",
    "register_pair",
    "required_multiple",
    "resolve_model_path",
    "save_model",
    "ssim",
    "target_for_dpm",
]
