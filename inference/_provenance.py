"""What a model file records about the run that trained it.

`Trainer.model_info` builds the `ModelInfo` that `save_model` writes: the generator
and normalization a model needs at inference, the optics and pixel size it serves,
the range it was really trained for, and the run's provenance (settings, data
fingerprints, history, best epoch and its validation, software versions). A model
file thereby explains itself years later.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from deepz_live.inference._modelfile import ModelInfo
    from deepz_live.inference._train import Trainer

__all__ = ["training_model_info"]


def training_model_info(
    trainer: Trainer, name: str, extra_training: dict[str, Any] | None = None
) -> ModelInfo:
    """A `ModelInfo` describing ``trainer``'s run (see `Trainer.model_info`)."""
    import torch

    from deepz_live.inference._modelfile import ModelInfo

    pixel = {s.pixel_um[1] for s in trainer.stacks}
    wavelengths = {s.wavelength_um for s in trainer.stacks}
    nas = {s.na for s in trainer.stacks}
    by_epoch = {h.epoch: h.validation for h in trainer.history}
    last = by_epoch.get(
        trainer.best_epoch, trainer.history[-1].validation if trainer.history else {}
    )
    return ModelInfo(
        format_version=1,
        name=name,
        generator=trainer.config.generator.to_dict(),
        normalization=trainer.normalization.to_dict(),
        pixel_size_um=float(np.median(sorted(pixel))),
        wavelength_um=wavelengths.pop() if len(wavelengths) == 1 else None,
        na=nas.pop() if len(nas) == 1 else None,
        dz_range_um=trainer.trained_range_um,
        dpm_scale_um=trainer.config.pairs.dz_range_um,
        training={
            "config": trainer.config.to_dict(),
            "epochs_done": trainer.epoch,
            "best_epoch": trainer.best_epoch,
            "validation_score_db": trainer.best_score,
            "beats_identity": trainer.beats_identity,
            "clean_targets": bool(
                trainer.config.pairs.clean_targets
                and any(s.clean is not None for s in trainer.stacks)
            ),
            "data": [
                {"source": s.source, "sha256": s.fingerprint()} for s in trainer.stacks
            ],
            "history": [
                {k: v for k, v in asdict(h).items() if k != "validation"}
                for h in trainer.history
            ],
            **_target_info(trainer),
            **(extra_training or {}),
        },
        validation=last,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        software={"torch": torch.__version__, **_deepz_version()},
    )


def _target_info(trainer: Trainer) -> dict[str, Any]:
    """Model-file entries of cross-modality training (empty otherwise)."""
    if trainer.target_stacks is None or trainer.target_normalization is None:
        return {}
    return {
        # evaluation and inference must normalize targets the same way
        "target_normalization": trainer.target_normalization.to_dict(),
        # robust target/input brightness of the training data: puts outputs of
        # a "stack"-mode model back into target counts, documents the setup
        "target_brightness_ratio": float(
            np.median(trainer.train_pairs.target_brightness_ratios)
        ),
        "target_data": [
            {"source": s.source, "sha256": s.fingerprint()}
            for s in trainer.target_stacks
        ],
    }


def _deepz_version() -> dict[str, str]:
    """The installed deepz-live version (none when run from an uninstalled tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return {"deepz-live": version("deepz-live")}
    except PackageNotFoundError:
        return {}
