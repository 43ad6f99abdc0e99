"""The plain data of a training run: its settings and what each epoch logged.

`TrainConfig` is everything that defines a run (saved with the model and in its
checkpoints); `with_overrides` changes it by field name, including the fields of
its `PairConfig` and `GeneratorConfig`. `check_stack_training` states, as clear
errors, what the ``"deepz-stack"`` architecture cannot be trained with. `EpochLog`
is one line of a run's history.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from deepz_live.inference._errors import InferenceError
from deepz_live.inference._networks import DiscriminatorConfig, GeneratorConfig
from deepz_live.inference._pairs import PairConfig

if TYPE_CHECKING:
    from collections.abc import Sequence

    from deepz_live.inference._zstack import ZStack

__all__ = ["EpochLog", "TrainConfig", "check_stack_training", "with_overrides"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved with the model).

    Loss weights follow the Deep-Z recipe in spirit: pixel and structural terms
    dominate, the adversarial term sharpens.
    """

    epochs: int = 20
    steps_per_epoch: int = 200
    batch_size: int = 8
    pairs: PairConfig = field(default_factory=PairConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig | None = field(
        default_factory=DiscriminatorConfig
    )
    lr_generator: float = 2e-4
    lr_discriminator: float = 2e-4
    weight_decay: float = 1e-4
    weight_l1: float = 1.0
    weight_ssim: float = 0.5
    weight_adversarial: float = 0.02
    pixel_loss: Literal["l1", "l2"] = "l2"
    grad_clip: float = 1.0
    split_by: Literal["stack", "region"] = "stack"
    val_fraction: float = 0.25
    val_inputs_per_stack: int = 2
    seed: int = 0
    device: str = "auto"
    amp: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (model files, checkpoints)."""
        d = asdict(self)
        d["generator"] = self.generator.to_dict()
        d["discriminator"] = (
            None if self.discriminator is None else self.discriminator.to_dict()
        )
        return d


@dataclass
class EpochLog:
    """One epoch of a run's history: mean losses over its steps, its duration and
    its validation (`EvaluationResult.to_dict`)."""

    epoch: int
    loss_generator: float
    loss_l1: float
    loss_ssim: float
    loss_adversarial: float
    loss_discriminator: float | None
    seconds: float
    validation: dict[str, Any]


def with_overrides(config: TrainConfig, **changes: Any) -> TrainConfig:
    """A copy of ``config``; ``pairs``/``generator`` fields may be given by name."""
    pair_fields = set(PairConfig.__dataclass_fields__)
    gen_fields = set(GeneratorConfig.__dataclass_fields__)
    pair_changes = {k: changes.pop(k) for k in list(changes) if k in pair_fields}
    gen_changes = {k: changes.pop(k) for k in list(changes) if k in gen_fields}
    if pair_changes:
        changes["pairs"] = replace(config.pairs, **pair_changes)
    if gen_changes:
        changes["generator"] = replace(config.generator, **gen_changes)
    return replace(config, **changes)


def check_stack_training(
    config: TrainConfig, target_stacks: Sequence[ZStack] | None
) -> None:
    """The ``"deepz-stack"`` architecture's training limits, as clear errors."""
    if config.discriminator is not None:
        raise InferenceError(
            "The deepz-stack architecture trains without the adversarial term; "
            "train it with --no-gan (TrainConfig.discriminator=None)."
        )
    if target_stacks is not None:
        raise InferenceError(
            "Cross-modality training needs the deepz-unet architecture; the "
            "deepz-stack architecture refocuses within one modality."
        )
    reach = max(abs(p) for p in config.generator.planes_um)
    if reach > config.pairs.dz_range_um + 1e-9:
        raise InferenceError(
            f"The stack's planes reach ±{reach:g} µm but the training range is "
            f"±{config.pairs.dz_range_um:g} µm; make the range at least as large."
        )
