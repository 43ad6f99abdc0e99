"""Training a Deep-Z generator from z-stacks: the `Trainer`.

The recipe of Wu et al. (Nat. Methods 16, 1323, 2019): a U-Net generator fed
[image, DPM] and a conditional PatchGAN discriminator, trained with a least-squares
adversarial loss plus pixel (L1) and structural (1 − SSIM) terms (`_losses`). AdamW,
gradient clipping, automatic mixed precision on CUDA, a fixed seed; a checkpoint
after every epoch (``--resume`` continues from it) and validation on held-out data
every epoch (PSNR/SSIM per |dz| bin against the identity baseline); the weights of
the best validated epoch are kept. The run's settings are a `TrainConfig`; what a
saved model records of the run is built by `_provenance`.

Given ``target_stacks`` (registered stacks of the same samples from another detector)
the same recipe trains the cross-modality variant of Deep-Z: widefield plane and DPM
in, confocal plane at ``z + DPM`` out, validated against the held-out confocal planes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepz_live.inference._errors import InferenceError
from deepz_live.inference._evaluate import evaluate_stacks
from deepz_live.inference._losses import (
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    pixel_loss,
    structural_loss,
)
from deepz_live.inference._networks import (
    GeneratorConfig,
    build_discriminator,
    build_generator,
    required_multiple,
)
from deepz_live.inference._normalize import Normalization
from deepz_live.inference._pairs import PairSampler
from deepz_live.inference._provenance import training_model_info
from deepz_live.inference._runtime import pick_device
from deepz_live.inference._target_normalization import TargetNormalization
from deepz_live.inference._train_config import EpochLog, check_stack_training

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from deepz_live.inference._evaluation_result import EvaluationResult
    from deepz_live.inference._modelfile import ModelInfo
    from deepz_live.inference._train_config import TrainConfig
    from deepz_live.inference._zstack import ZStack

__all__ = ["Trainer"]


class Trainer:
    """Owns the networks, optimizers and data of one training run.

    Parameters
    ----------
    stacks : sequence of ZStack
        Input z-stacks (and, without ``target_stacks``, their own targets).
    config : TrainConfig
        The run's settings.
    normalization : Normalization, optional
        Input normalization; default `Normalization.fit` of the stacks.
    target_stacks : sequence of ZStack, optional
        Cross-modality training: registered target stacks, one per input stack
        (see `PairSampler`).
    target_normalization : TargetNormalization, optional
        How those targets are normalized; default `TargetNormalization.fit`.
    """

    def __init__(
        self,
        stacks: Sequence[ZStack],
        config: TrainConfig,
        *,
        normalization: Normalization | None = None,
        target_stacks: Sequence[ZStack] | None = None,
        target_normalization: TargetNormalization | None = None,
    ) -> None:
        import torch

        if not stacks:
            raise InferenceError("Training needs at least one z-stack.")
        self.config = config
        self.stacks = list(stacks)
        self.device = pick_device(config.device)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        multiple = required_multiple(config.generator)
        if config.pairs.crop % multiple:
            raise InferenceError(
                f"Crop {config.pairs.crop} must be a multiple of {multiple} for a "
                f"depth-{config.generator.depth} U-Net; choose e.g. "
                f"{math.ceil(config.pairs.crop / multiple) * multiple}."
            )
        if config.generator.is_stack:
            check_stack_training(config, target_stacks)
        self.normalization = normalization or Normalization.fit(self.stacks)
        self.target_stacks = None if target_stacks is None else list(target_stacks)
        self.target_normalization = (
            None
            if self.target_stacks is None
            else target_normalization or TargetNormalization.fit(self.target_stacks)
        )
        self._make_samplers()
        self.generator = build_generator(config.generator).to(self.device)
        self.discriminator = (
            None
            if config.discriminator is None
            else build_discriminator(config.discriminator).to(self.device)
        )
        self.opt_g = torch.optim.AdamW(
            self.generator.parameters(),
            lr=config.lr_generator,
            weight_decay=config.weight_decay,
        )
        self.opt_d = (
            None
            if self.discriminator is None
            else torch.optim.AdamW(
                self.discriminator.parameters(),
                lr=config.lr_discriminator,
                weight_decay=config.weight_decay,
            )
        )
        self.use_amp = bool(config.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.epoch = 0
        self.history: list[EpochLog] = []
        # the generator's weights at the best validation score so far
        self.best_epoch = 0
        self.best_score: float | None = None
        self._best_state: dict[str, Any] | None = None

    def _make_samplers(self) -> None:
        """Train/val samplers from the current normalizations (again after resume)."""
        config = self.config
        self.train_pairs, self.val_pairs = (
            PairSampler(
                self.stacks,
                config.pairs,
                self.normalization,
                split=split,
                seed=config.seed,
                val_fraction=config.val_fraction,
                split_by=config.split_by,
                target_stacks=self.target_stacks,
                target_normalization=self.target_normalization,
            )
            for split in ("train", "val")
        )

    # -- one step ------------------------------------------------------------------
    def _tensors(self, n: int) -> tuple[Any, ...]:
        import torch

        if self.config.generator.is_stack:
            arrays: tuple[np.ndarray, ...] = self.train_pairs.stack_batch(
                n, self.rng, self.config.generator.planes_um
            )
        else:
            arrays = self.train_pairs.batch(n, self.rng)
        return tuple(torch.from_numpy(a).to(self.device) for a in arrays)

    def step(self, batch: tuple[Any, ...] | None = None) -> dict[str, float]:
        """One optimisation step of the discriminator (if any) and the generator.

        Parameters
        ----------
        batch : (x, y) or (x, y, mask), optional
            Network input (N, 2, H, W) and target (N, 1, H, W) tensors; for the
            ``"deepz-stack"`` architecture input (N, 1, H, W), targets (N, K, H, W)
            and a (N, K) mask of the targets that exist. By default a fresh batch
            from the training pairs.
        """
        cfg = self.config
        tensors = self._tensors(cfg.batch_size) if batch is None else batch
        if cfg.generator.is_stack:
            return self._stack_step(*tensors)
        return self._pair_step(*tensors)

    def _stack_step(self, x: Any, y: Any, mask: Any) -> dict[str, float]:
        """L1 + SSIM over every plane that has a target (no adversarial term)."""
        import torch

        cfg = self.config
        with torch.autocast(self.device.type, enabled=self.use_amp):
            fake = self.generator(x)
        fake = fake.float()
        valid = mask.reshape(-1) > 0
        height, width = fake.shape[-2:]
        fake_planes = fake.reshape(-1, 1, height, width)[valid]
        true_planes = y.reshape(-1, 1, height, width)[valid]
        l1 = pixel_loss(fake_planes - true_planes, cfg.pixel_loss)
        # SSIM on a random subset of the planes (as many as the batch has inputs,
        # times 2): an unbiased estimate of the mean over all planes at a
        # twentieth of the cost; single-channel convolutions are slow on CPUs.
        subset = torch.randperm(fake_planes.shape[0], device=self.device)[
            : 2 * x.shape[0]
        ]
        l_ssim = structural_loss(fake_planes[subset], true_planes[subset], 1.0)
        loss_g = cfg.weight_l1 * l1 + cfg.weight_ssim * l_ssim
        self._update_generator(loss_g)
        return {
            "generator": float(loss_g.detach()),
            "l1": float(l1.detach()),
            "ssim": float(l_ssim.detach()),
            "adversarial": 0.0,
        }

    def _update_generator(self, loss: Any) -> None:
        """Backpropagate ``loss`` and step the generator (scaled, clipped)."""
        import torch

        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt_g)
        torch.nn.utils.clip_grad_norm_(
            self.generator.parameters(), self.config.grad_clip
        )
        self.scaler.step(self.opt_g)
        self.scaler.update()

    def _pair_step(self, x: Any, y: Any) -> dict[str, float]:
        import torch

        cfg = self.config
        data_range = 1.0  # normalized units: the input's robust maximum is 1
        autocast = torch.autocast(self.device.type, enabled=self.use_amp)
        losses: dict[str, float] = {}

        with autocast:
            fake = self.generator(x)
        if self.discriminator is not None and self.opt_d is not None:
            self.discriminator.train()
            with autocast:
                d_real = self.discriminator(torch.cat([x, y], dim=1))
                d_fake = self.discriminator(torch.cat([x, fake.detach()], dim=1))
                loss_d = lsgan_discriminator_loss(d_real, d_fake)
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler.scale(loss_d).backward()
            self.scaler.unscale_(self.opt_d)
            torch.nn.utils.clip_grad_norm_(
                self.discriminator.parameters(), cfg.grad_clip
            )
            self.scaler.step(self.opt_d)
            losses["discriminator"] = float(loss_d.detach())

        with autocast:
            l1 = pixel_loss(fake - y, cfg.pixel_loss)
        l_ssim = structural_loss(fake.float(), y.float(), data_range)
        loss_g = cfg.weight_l1 * l1 + cfg.weight_ssim * l_ssim
        adversarial = torch.zeros((), device=self.device)
        if self.discriminator is not None:
            with autocast:
                adversarial = lsgan_generator_loss(
                    self.discriminator(torch.cat([x, fake], 1))
                )
            loss_g = loss_g + cfg.weight_adversarial * adversarial
        self._update_generator(loss_g)
        losses.update(
            generator=float(loss_g.detach()),
            l1=float(l1.detach()),
            ssim=float(l_ssim.detach()),
            adversarial=float(adversarial.detach()),
        )
        return losses

    # -- validation ----------------------------------------------------------------
    def validate(self) -> EvaluationResult:
        """PSNR/SSIM per |dz| on held-out stacks or regions, model vs identity."""
        from deepz_live.inference._apply import predict_normalized

        self.generator.eval()
        crop = self.config.pairs.crop  # held-out windows the size of training crops

        def predict(normalized: np.ndarray, dz: np.ndarray) -> np.ndarray:
            return predict_normalized(
                self.generator,
                normalized,
                dz,
                dpm_scale_um=self.config.pairs.dz_range_um,
                device=self.device,
            )

        result = evaluate_stacks(
            predict,
            self.val_pairs.held_out_stacks(),
            self.normalization,
            dz_range_um=self.config.pairs.dz_range_um,
            inputs_per_stack=self.config.val_inputs_per_stack,
            crop=crop,
            model_name="validation",
            target_stacks=self.val_pairs.held_out_target_stacks(),
            target_normalization=self.target_normalization,
        )
        self.generator.train()
        return result

    # -- epochs, checkpoints -------------------------------------------------------
    def run(
        self,
        *,
        checkpoint: Path | None = None,
        on_step: Callable[[int, int, dict[str, float]], None] | None = None,
        on_epoch: Callable[[EpochLog], None] | None = None,
    ) -> list[EpochLog]:
        """Train until ``config.epochs``; checkpoint and validate after each epoch."""
        cfg = self.config
        self.generator.train()
        while self.epoch < cfg.epochs:
            t0 = time.perf_counter()
            sums: dict[str, float] = {}
            for s in range(cfg.steps_per_epoch):
                losses = self.step()
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                if on_step is not None:
                    on_step(s + 1, cfg.steps_per_epoch, losses)
            self.epoch += 1
            val = self.validate()
            n = cfg.steps_per_epoch
            log = EpochLog(
                epoch=self.epoch,
                loss_generator=sums["generator"] / n,
                loss_l1=sums["l1"] / n,
                loss_ssim=sums["ssim"] / n,
                loss_adversarial=sums["adversarial"] / n,
                loss_discriminator=(
                    sums["discriminator"] / n if "discriminator" in sums else None
                ),
                seconds=time.perf_counter() - t0,
                validation=val.to_dict(),
            )
            self.history.append(log)
            self._keep_if_best(val)
            if checkpoint is not None:
                self.save_checkpoint(checkpoint)
            if on_epoch is not None:
                on_epoch(log)
        return self.history

    def initialize_from(self, model: str | Path) -> None:
        """Start from the weights of a saved model (fine-tuning).

        Raises
        ------
        InferenceError
            The model's generator is not the one this run trains (architecture,
            widths, planes).
        """
        from deepz_live.inference._modelfile import load_model

        generator, info = load_model(model, device=str(self.device))
        if GeneratorConfig.from_dict(info.generator) != self.config.generator:
            raise InferenceError(
                f"{model} has another generator ({info.generator.get('architecture')}"
                f", width {info.generator.get('base_width')}, "
                f"{len(info.generator.get('planes_um') or [])} planes) than this run "
                f"({self.config.generator.architecture}, width "
                f"{self.config.generator.base_width}, "
                f"{len(self.config.generator.planes_um)} planes); train with the "
                "same --architecture, --base-width and range."
            )
        self.generator.load_state_dict(generator.state_dict())

    @staticmethod
    def validation_score(result: EvaluationResult) -> float | None:
        """Mean PSNR gain over the identity (dB, |dz| ≥ 1 µm) on held-out data.

        Against the noise-free planes where the stacks have them (a noisy plane's
        own noise caps the recorded-plane score), else against the recorded ones.
        Positive: the model predicts real planes better than doing nothing.
        """
        clean = (
            result.mean_psnr_gain_db(1.0, clean=True) if result.clean_targets else None
        )
        return clean if clean is not None else result.mean_psnr_gain_db(1.0)

    def _keep_if_best(self, result: EvaluationResult) -> None:
        score = self.validation_score(result)
        if score is None:
            return
        if self.best_score is None or score > self.best_score:
            self.best_score = score
            self.best_epoch = self.epoch
            self._best_state = {
                k: v.detach().to("cpu", copy=True)
                for k, v in self.generator.state_dict().items()
            }

    def use_best(self) -> int:
        """Load the weights of the best validated epoch; return that epoch (0: none).

        Training keeps the checkpoint with the best validation score, not the last:
        the last epoch may have overfitted or diverged.
        """
        if self._best_state is not None:
            self.generator.load_state_dict(self._best_state)
        return self.best_epoch

    @property
    def beats_identity(self) -> bool | None:
        """Whether the best epoch predicted held-out planes better than the input."""
        return None if self.best_score is None else self.best_score > 0

    def save_checkpoint(self, path: Path) -> None:
        """Networks, optimizers, epoch and RNG state: enough to resume exactly."""
        import torch

        state = {
            "epoch": self.epoch,
            "generator": self.generator.state_dict(),
            "optimizer_g": self.opt_g.state_dict(),
            "discriminator": (
                None if self.discriminator is None else self.discriminator.state_dict()
            ),
            "optimizer_d": None if self.opt_d is None else self.opt_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "config": json.dumps(self.config.to_dict()),
            "normalization": json.dumps(self.normalization.to_dict()),
            "target_normalization": json.dumps(
                None
                if self.target_normalization is None
                else self.target_normalization.to_dict()
            ),
            "history": json.dumps([asdict(h) for h in self.history]),
            "numpy_rng": json.dumps(self.rng.bit_generator.state),
            "torch_rng": torch.get_rng_state(),
            "best": {
                "epoch": self.best_epoch,
                "score": json.dumps(self.best_score),
                "generator": self._best_state or {},
            },
        }
        tmp = Path(str(path) + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)

    def load_checkpoint(self, path: Path) -> None:
        """Continue a run; the checkpoint must come from the same configuration."""
        import torch

        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:
            raise InferenceError(
                f"Cannot read checkpoint {path}: {exc}. Delete it to start afresh."
            ) from exc
        saved = json.loads(state["config"])
        current = json.loads(json.dumps(self.config.to_dict()))
        ignore = {"epochs", "device", "amp"}
        diff = sorted(
            k for k in current if k not in ignore and saved.get(k) != current.get(k)
        )
        if diff:
            raise InferenceError(
                f"Checkpoint {path} was made with different settings "
                f"({', '.join(diff)}); use the same settings to resume, or delete it "
                "to start afresh."
            )
        self.generator.load_state_dict(state["generator"])
        self.opt_g.load_state_dict(state["optimizer_g"])
        if self.discriminator is not None and state["discriminator"] is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            assert self.opt_d is not None
            self.opt_d.load_state_dict(state["optimizer_d"])
        self.scaler.load_state_dict(state["scaler"])
        self.normalization = Normalization.from_dict(json.loads(state["normalization"]))
        saved_target = json.loads(state.get("target_normalization", "null"))
        if (saved_target is None) != (self.target_stacks is None):
            raise InferenceError(
                f"Checkpoint {path} was made "
                + ("with" if saved_target is not None else "without")
                + " target stacks (cross-modality); resume it the same way, or "
                "delete it to start afresh."
            )
        if saved_target is not None:
            self.target_normalization = TargetNormalization.from_dict(saved_target)
        # the samplers hold the normalizations: rebuild them with the restored ones
        self._make_samplers()
        self.history = [EpochLog(**h) for h in json.loads(state["history"])]
        self.rng.bit_generator.state = json.loads(state["numpy_rng"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch = int(state["epoch"])
        best = state.get("best") or {}
        self.best_epoch = int(best.get("epoch", 0))
        self.best_score = json.loads(best.get("score", "null"))
        self._best_state = dict(best.get("generator") or {}) or None

    # -- the model file ------------------------------------------------------------
    # -- the model file ------------------------------------------------------------
    def model_info(
        self, name: str, extra_training: dict[str, Any] | None = None
    ) -> ModelInfo:
        """A `ModelInfo` describing this run, for `save_model`."""
        return training_model_info(self, name, extra_training)

    @property
    def trained_range_um(self) -> float:
        """The largest |dz| training pairs really reached: the configured range,
        or less where the stacks are shallower (their longest z extent)."""
        extent = max(float(s.z_um[-1] - s.z_um[0]) for s in self.stacks)
        return min(self.config.pairs.dz_range_um, extent)
