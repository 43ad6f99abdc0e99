"""The loss terms of Deep-Z training (Wu et al., Nat. Methods 16, 1323, 2019).

The generator minimises a pixel term (`pixel_loss`), a structural term
(`structural_loss`, 1 − SSIM) and, with a discriminator, the least-squares GAN term
(`lsgan_generator_loss`); the conditional PatchGAN discriminator minimises
`lsgan_discriminator_loss`. Each takes and returns torch tensors; torch itself is
never imported here (the caller's tensors carry it).
"""

from __future__ import annotations

from typing import Any

from deepz_live.inference._metrics import ssim_torch

__all__ = [
    "lsgan_discriminator_loss",
    "lsgan_generator_loss",
    "pixel_loss",
    "structural_loss",
]


def pixel_loss(error: Any, kind: str) -> Any:
    """Mean absolute (``"l1"``) or squared (``"l2"``) error.

    Where the input leaves an object's depth uncertain, L1 is minimised by the
    per-pixel median over the possible depths, which is dark wherever no single
    depth is more likely than not: an uncertain object vanishes from every
    plane. L2 is minimised by the mean, whose profile along z peaks at the most
    likely depth: the object stays, dimmer and spread over the depths it may
    have. Axial localization needs the second.
    """
    if kind == "l2":
        return (error**2).mean()
    return error.abs().mean()


def structural_loss(fake: Any, target: Any, data_range: float = 1.0) -> Any:
    """``1 − SSIM`` of ``(N, 1, H, W)`` images (normalized units: range 1)."""
    return 1 - ssim_torch(fake, target, data_range)


def lsgan_discriminator_loss(d_real: Any, d_fake: Any) -> Any:
    """Least-squares GAN: real patches towards 1, generated ones towards 0."""
    return 0.5 * (((d_real - 1) ** 2).mean() + (d_fake**2).mean())


def lsgan_generator_loss(d_fake: Any) -> Any:
    """Least-squares GAN: the generator wants its patches judged real (1)."""
    return ((d_fake - 1) ** 2).mean()
