"""Deep-Z models: datasets from z-stacks, networks, training, evaluation, model files.

Works on arrays and files only: this layer never imports ``acquisition``, ``gui`` or
Qt, and torch is imported only when a network is built or run.
"""

from ._apply import predict_normalized
from ._bench import MIN_BENCH_SIZE, BenchResult, bench_all, bench_refocuser
from ._defaults import TrainingDefaults, training_defaults
from ._errors import (
    InferenceError,
    ModelFileError,
    ModelMismatchWarning,
    ModelQualityWarning,
    StackFormatError,
)
from ._evaluate import MIN_EVALUATION_WINDOW_PX, evaluate_stacks
from ._evaluation_plot import plot_evaluation
from ._evaluation_result import BinMetrics, EvaluationResult
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
from ._pairs import PairConfig, PairSampler
from ._refocuser import Refocuser
from ._register import estimate_shift, register_pair, valid_slices
from ._runtime import pick_device
from ._splits import SplitRegion
from ._stacks import read_stacks
from ._target_normalization import TargetNormalization
from ._targets import target_for_dpm
from ._tensorrt_cache import sidecar_path
from ._tensorrt_export import export_tensorrt
from ._tensorrt_support import TensorRTBuildError, import_tensorrt, tensorrt_available
from ._train import Trainer
from ._train_config import EpochLog, TrainConfig, with_overrides
from ._zstack import ZStack

__all__ = [
    "DEFAULT_MODEL_NAME",
    "LIVE_MODEL_NAME",
    "MIN_BENCH_SIZE",
    "MIN_EVALUATION_WINDOW_PX",
    "BenchResult",
    "BinMetrics",
    "DiscriminatorConfig",
    "EpochLog",
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
    "SplitRegion",
    "StackFormatError",
    "TargetNormalization",
    "TensorRTBuildError",
    "TrainConfig",
    "Trainer",
    "TrainingDefaults",
    "ZStack",
    "bench_all",
    "bench_refocuser",
    "build_discriminator",
    "build_generator",
    "bundled_model_names",
    "check_compatibility",
    "estimate_gflops",
    "estimate_shift",
    "evaluate_stacks",
    "export_onnx",
    "export_tensorrt",
    "import_tensorrt",
    "load_model",
    "nrmse",
    "pick_device",
    "plot_evaluation",
    "predict_normalized",
    "psnr",
    "read_model_info",
    "read_stacks",
    "register_pair",
    "required_multiple",
    "resolve_model_path",
    "save_model",
    "sidecar_path",
    "ssim",
    "target_for_dpm",
    "tensorrt_available",
    "training_defaults",
    "valid_slices",
    "with_overrides",
]
