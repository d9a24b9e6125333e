"""The loss terms of the frameworks: pix2pix (L1 + conditional adversarial), L1 alone, the optional SSIM term, and
the terms pGAN, mmGAN and MedSynth add (least-squares adversarial loss, gradient difference loss); pGAN's
perceptual loss lives in :mod:`mrsynth.training.perceptual`, next to its VGG16 network."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mrsynth.metrics import WIN_SIZE, ssim_map


def adversarial_loss(logits: Tensor, real: bool) -> Tensor:
    """pix2pix's vanilla GAN loss: binary cross-entropy of every PatchGAN logit against one label."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Halved as in pix2pix, which slows the discriminator relative to the generator."""
    return 0.5 * (adversarial_loss(real_logits, True) + adversarial_loss(fake_logits, False))


def least_squares_loss(scores: Tensor, labels: Tensor | float) -> Tensor:
    """The least-squares GAN loss (Mao et al. 2017) that pGAN and mmGAN use: ``mean (D(.) - label)^2``.

    ``labels`` is 1 (real) or 0 (synthesised), or a tensor broadcasting against ``scores`` (mmGAN labels each
    contrast's channel of the discriminator's map on its own).
    """
    return torch.mean((scores.float() - labels) ** 2)


def gradient_difference_loss(fake: Tensor, target: Tensor) -> Tensor:
    """MedSynth's image gradient difference loss (Nie et al. 2018, after Mathieu et al. 2016):

    ``L_GDL(Y, Y^) = || |grad_x Y| - |grad_x Y^| ||^2 + || |grad_y Y| - |grad_y Y^| ||^2``

    with forward differences along each in-plane axis; each squared norm is taken as a mean over the pixels (the
    paper writes sums), so the weight does not depend on the crop size. Why it helps: it penalises where edges
    are and how strong they are, which L2 alone blurs away.
    """
    loss = fake.new_zeros(())
    for dim in (-1, -2):
        fake_grad = torch.diff(fake, dim=dim).abs()
        target_grad = torch.diff(target, dim=dim).abs()
        loss = loss + torch.mean((target_grad - fake_grad) ** 2)
    return loss


def ssim(fake: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Mean SSIM of (N, 1, H, W) batches, differentiable: :func:`mrsynth.metrics.ssim_map`, the definition the
    metrics report (7x7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance, windows fully inside the image),
    so that a loss on it optimises the figure validation and ``mrsynth eval`` measure."""
    return ssim_map(fake, target, lambda image: F.avg_pool2d(image, WIN_SIZE, stride=1), data_range).mean()


def generator_loss(fake_logits: Tensor | None, fake: Tensor, target: Tensor, lambda_l1: float,
                   lambda_ssim: float = 0.0) -> dict[str, Tensor]:
    """``total = adv + lambda_l1 * L1`` (pix2pix) or ``L1`` alone when there is no discriminator, plus
    ``lambda_ssim * (1 - SSIM)`` when that weight is positive.

    Why an SSIM term: L1 alone yields the conditional median, which scores well in PSNR but blurs local contrast
    that SSIM rewards (Zhao et al. 2017, "Loss functions for image restoration with neural networks", mix L1
    with (MS-)SSIM for this reason). The reported ``l1`` is the unweighted mean absolute error, comparable across
    frameworks.
    """
    l1 = F.l1_loss(fake.float(), target.float())
    terms = {"l1": l1}
    total = l1 if fake_logits is None else lambda_l1 * l1
    if lambda_ssim > 0:
        terms["ssim"] = ssim(fake.float(), target.float())
        total = total + lambda_ssim * (1 - terms["ssim"])
    if fake_logits is None:
        return {"total": total, **terms}
    adv = adversarial_loss(fake_logits.float(), True)
    return {"total": adv + total, **terms, "adv": adv}
