"""Losses of the two frameworks: pix2pix (L1 + conditional adversarial) and L1 alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def adversarial_loss(logits: Tensor, real: bool) -> Tensor:
    """pix2pix's vanilla GAN loss: binary cross-entropy of every PatchGAN logit against one label."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Halved as in pix2pix, which slows the discriminator relative to the generator."""
    return 0.5 * (adversarial_loss(real_logits, True) + adversarial_loss(fake_logits, False))


def generator_loss(fake_logits: Tensor | None, fake: Tensor, target: Tensor, lambda_l1: float) -> dict[str, Tensor]:
    """``total = adv + lambda_l1 * L1`` (pix2pix) or ``L1`` alone when there is no discriminator.

    The reported ``l1`` is the unweighted mean absolute error, comparable across frameworks.
    """
    l1 = F.l1_loss(fake.float(), target.float())
    if fake_logits is None:
        return {"total": l1, "l1": l1}
    adv = adversarial_loss(fake_logits.float(), True)
    return {"total": adv + lambda_l1 * l1, "l1": l1, "adv": adv}
