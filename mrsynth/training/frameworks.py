"""The training frameworks of ``mrsynth train --framework``: what the generator sees, which discriminator judges
what, and the losses of both players. The loop (:mod:`mrsynth.training.trainer`) is the same for all of them, and
each accepts any generator of :func:`mrsynth.models.build_model` (AGI-Net or ResUnet), as the paper's Table 6 needs.

* ``l1``: the generator alone, ``L1(y, G(x))``.
* ``pix2pix`` (Isola et al. 2017): ``L_cGAN + 100 L1`` with a conditional PatchGAN (BCE).
* ``pgan`` (Dar et al. 2019, pGAN): ``L_condGAN + lambda L_L1 + lambda_perc L_perc`` with lambda = lambda_perc =
  100, ``L_condGAN`` in least squares, ``L_perc`` the L1 distance of VGG16 features
  (:mod:`mrsynth.training.perceptual`).
* ``mmgan`` (Sharma and Hamarneh 2019, MM-GAN): one generator for any subset of missing contrasts of a fixed set
  (:mod:`mrsynth.imputation`), with implicit conditioning and a curriculum (:mod:`mrsynth.training.curriculum`).
* ``medsynth`` (Nie et al. 2018): ``lambda_adv L_ADV + lambda_2 L_2 + lambda_gdl L_GDL`` with an image-level CNN
  discriminator that sees the target contrast only; lambdas 0.5, 1, 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrsynth.data.target_median import target_median
from mrsynth.imputation import ANY_TARGET, ImputationSpec, Imputer, impute, zero_fill
from mrsynth.models import ModelConfig, PatchGAN
from mrsynth.models.discriminator import ImageCritic
from mrsynth.training.config import TrainConfig
from mrsynth.training.curriculum import draw_present
from mrsynth.training.losses import (adversarial_loss, discriminator_loss, generator_loss, gradient_difference_loss,
                                     least_squares_loss)
from mrsynth.training.validation import validate

MMGAN_LAMBDA = 0.9
"""MM-GAN's weighting ``L_G = (1 - lambda) L_adv + lambda L1`` of its generator loss."""
MEDSYNTH_WEIGHTS = {"adv": 0.5, "l2": 1.0, "gdl": 1.0}
"""Nie et al.'s lambda_1 (adversarial), lambda_2 (L2) and lambda_3 (gradient difference)."""


@dataclass
class Batch:
    """One iteration's tensors: what the generator sees, what its output is compared with, and (mmGAN) which
    contrasts of each sample are present."""

    x: Tensor
    target: Tensor
    present: Tensor | None = None


class Framework:
    """What every framework shares; as it stands, the generator alone with an L1 loss and no discriminator.
    Subclasses add a discriminator and their losses."""

    name = ""
    conditional = True
    """Whether the discriminator sees the generator's inputs next to the image it judges."""

    def __init__(self, config: TrainConfig, model_config: ModelConfig, metadata: dict[str, Any],
                 device: torch.device, rank: int = 0) -> None:
        self.config, self.model_config, self.metadata = config, model_config, metadata
        self.device, self.rank = device, rank

    @staticmethod
    def discriminator(model_config: ModelConfig) -> nn.Module | None:
        """A fresh discriminator for this generator (None: no adversarial game)."""
        return None

    def prepare(self, x: Tensor, y: Tensor, iteration: int) -> Batch:
        return Batch(x, y)

    def output(self, generated: Tensor, batch: Batch) -> Tensor:
        """What the losses and the discriminator see of the generator's output."""
        return generated

    def judged(self, batch: Batch, image: Tensor) -> Tensor:
        """The discriminator's input for an image (synthesised or real)."""
        return torch.cat((batch.x, image), 1) if self.conditional else image

    def d_loss(self, real_scores: Tensor, fake_scores: Tensor, batch: Batch) -> Tensor:
        return discriminator_loss(real_scores, fake_scores)

    def g_loss(self, fake_scores: Tensor | None, image: Tensor, batch: Batch) -> dict[str, Tensor]:
        return generator_loss(None, image, batch.target, self.config.lambda_l1, self.config.lambda_ssim)

    def validate(self, generator: nn.Module, val_set: Any, batch_size: int, amp: bool) -> dict[str, Any]:
        return validate(generator, val_set, self.device, batch_size, amp, target_median(self.metadata))

    def checkpoint_metadata(self) -> dict[str, Any]:
        """Metadata the framework adds to every checkpoint (mmGAN: its imputation contract)."""
        return {}


class L1(Framework):
    """``l1``: ``L1(y, G(x))``, no adversarial game."""

    name = "l1"


class Pix2Pix(Framework):
    """pix2pix: a PatchGAN judges [inputs, image] pairs; ``adv + lambda_l1 L1`` with the BCE loss."""

    name = "pix2pix"

    @staticmethod
    def discriminator(model_config: ModelConfig) -> nn.Module | None:
        return PatchGAN(model_config.in_channels + model_config.out_channels)

    def g_loss(self, fake_scores: Tensor | None, image: Tensor, batch: Batch) -> dict[str, Tensor]:
        return generator_loss(fake_scores, image, batch.target, self.config.lambda_l1, self.config.lambda_ssim)


class PGAN(Pix2Pix):
    """pGAN (Dar et al. 2019, Sec. II-A), the pix2pix game with least-squares losses and a perceptual term:

    ``L_condGAN = -E[(D(x, y) - 1)^2] - E[D(x, G(x))^2]``, ``L_L1 = E[||y - G(x)||_1]``,
    ``L_perc = E[||V(y) - V(G(x))||_1]`` and ``L_pGAN = L_condGAN + lambda L_L1 + lambda_perc L_perc``,
    lambda = lambda_perc = 100 (``--lambda-l1``, ``--lambda-perc``); V: VGG16 features (``--vgg-layer``).
    """

    name = "pgan"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from mrsynth.training.perceptual import PerceptualLoss
        from mrsynth.training.vgg_weights import feature_network

        features = feature_network(self.config.vgg_layer, self.config.vgg_weights)
        self.perceptual = PerceptualLoss(features).to(self.device)

    def d_loss(self, real_scores: Tensor, fake_scores: Tensor, batch: Batch) -> Tensor:
        return 0.5 * (least_squares_loss(real_scores, 1.0) + least_squares_loss(fake_scores, 0.0))

    def g_loss(self, fake_scores: Tensor | None, image: Tensor, batch: Batch) -> dict[str, Tensor]:
        assert fake_scores is not None
        l1 = F.l1_loss(image.float(), batch.target.float())
        adv = least_squares_loss(fake_scores, 1.0)
        perc = self.perceptual(image.float(), batch.target.float())
        total = adv + self.config.lambda_l1 * l1 + self.config.lambda_perc * perc
        return {"total": total, "l1": l1, "adv": adv, "perc": perc}


class MedSynth(Framework):
    """MedSynth (Nie et al. 2018): ``L_G = lambda_1 L_ADV(X) + lambda_2 L_2(X) + lambda_3 L_GDL(X)``, with
    ``L_ADV = BCE(D(G(X)), 1)``, ``L_2 = ||Y - G(X)||^2`` and the gradient difference loss of
    :func:`mrsynth.training.losses.gradient_difference_loss`; the discriminator classifies target images as real
    or synthesised without seeing the inputs. Auto-context (a cascade of such models, each fed the previous
    synthesis) is not implemented: this is the paper's single-stage model.
    """

    name = "medsynth"
    conditional = False

    @staticmethod
    def discriminator(model_config: ModelConfig) -> nn.Module | None:
        return ImageCritic(model_config.out_channels)

    def g_loss(self, fake_scores: Tensor | None, image: Tensor, batch: Batch) -> dict[str, Tensor]:
        assert fake_scores is not None
        fake, target = image.float(), batch.target.float()
        adv = adversarial_loss(fake_scores.float(), True)
        l2 = F.mse_loss(fake, target)
        gdl = gradient_difference_loss(fake, target)
        total = MEDSYNTH_WEIGHTS["adv"] * adv + MEDSYNTH_WEIGHTS["l2"] * l2 + MEDSYNTH_WEIGHTS["gdl"] * gdl
        return {"total": total, "l1": F.l1_loss(fake, target), "adv": adv, "l2": l2, "gdl": gdl}


class MMGAN(Framework):
    """MM-GAN (Sharma and Hamarneh 2019) with implicit conditioning:

    * the generator sees every contrast of the set, the missing ones zero-filled, and outputs every contrast;
    * the imputed set keeps the real contrasts where present and the generator's where missing, and is what the
      discriminator judges; the L1 term counts the imputed (missing) contrasts only;
    * the discriminator (a PatchGAN with one output map per contrast, least squares) learns to call each present
      contrast real and each imputed one synthesised; the generator wants every map called real;
    * ``L_G = (1 - lambda) L_adv + lambda L1``, lambda = 0.9;
    * the number missing follows the curriculum of :mod:`mrsynth.training.curriculum`.

    Data: pairs ``(x, y)`` whose channels, x's then y's, are the contrast set in the order of the metadata's
    scenario ``inputs`` (its target is ``any``).
    """

    name = "mmgan"
    conditional = False  # the imputed set holds the present contrasts: the condition is implicit

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        scenario = self.metadata.get("scenario") or {}
        if scenario.get("target") != ANY_TARGET:
            raise ValueError(f"mmgan trains one model for any missing contrast: its scenario's target must be "
                             f"{ANY_TARGET!r}, got {scenario.get('target')!r}")
        contrasts = tuple(scenario["inputs"])
        self.spec = ImputationSpec(contrasts, self.config.max_missing or len(contrasts) - 1)
        channels = len(contrasts)
        if (self.model_config.in_channels, self.model_config.out_channels) != (channels, channels):
            raise ValueError(f"an mmgan generator takes and gives all {channels} contrasts; its config has "
                             f"{self.model_config.in_channels} in and {self.model_config.out_channels} out")

    @staticmethod
    def discriminator(model_config: ModelConfig) -> nn.Module | None:
        return PatchGAN(model_config.out_channels, out_channels=model_config.out_channels)

    def prepare(self, x: Tensor, y: Tensor, iteration: int) -> Batch:
        full = torch.cat((x, y), 1)
        present = draw_present(full.shape[0], full.shape[1], iteration, self.config.iters, self.spec.max_missing,
                               self.config.seed, self.rank).to(full.device)
        return Batch(zero_fill(full, present, self.spec.fill), full, present)

    def output(self, generated: Tensor, batch: Batch) -> Tensor:
        assert batch.present is not None
        return impute(batch.target.to(generated.dtype), generated, batch.present)

    def d_loss(self, real_scores: Tensor, fake_scores: Tensor, batch: Batch) -> Tensor:
        assert batch.present is not None
        labels = batch.present[:, :, None, None].float()
        return 0.5 * (least_squares_loss(real_scores, 1.0) + least_squares_loss(fake_scores, labels))

    def g_loss(self, fake_scores: Tensor | None, image: Tensor, batch: Batch) -> dict[str, Tensor]:
        assert fake_scores is not None and batch.present is not None
        missing = (~batch.present)[:, :, None, None].float()
        pixels = missing.sum() * image.shape[-2] * image.shape[-1]
        l1 = ((image.float() - batch.target.float()).abs() * missing).sum() / pixels
        adv = least_squares_loss(fake_scores, 1.0)
        return {"total": (1 - MMGAN_LAMBDA) * adv + MMGAN_LAMBDA * l1, "l1": l1, "adv": adv}

    def validate(self, generator: nn.Module, val_set: Any, batch_size: int, amp: bool) -> dict[str, Any]:
        """The mean over the one-missing scenarios (each contrast imputed from all the others), and each one's
        figures as ``<metric>_<contrast>``."""
        records = {}
        for target in self.spec.contrasts:
            present = self.spec.scenario(target)
            model = Imputer(generator, self.spec, present, target).to(self.device)
            records[target] = validate(model, _OneMissing(val_set, self.spec.contrasts.index(target)), self.device,
                                       batch_size, amp)
        metrics = [k for k in next(iter(records.values())) if k != "n_slices"]
        result: dict[str, Any] = {"n_slices": min(r["n_slices"] for r in records.values())}
        for metric in metrics:
            result[metric] = sum(r[metric] for r in records.values()) / len(records)
            result.update({f"{metric}_{c}": r[metric] for c, r in records.items()})
        return result

    def checkpoint_metadata(self) -> dict[str, Any]:
        return {"imputation": self.spec.to_dict()}


class _OneMissing(torch.utils.data.Dataset):
    """A dataset of full contrast sets seen as ``(present contrasts, the missing one)`` pairs for one scenario."""

    def __init__(self, base: Any, missing: int) -> None:
        self.base, self.missing = base, missing

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        x, y = self.base[index]
        full = torch.cat((torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)))
        keep = [c for c in range(full.shape[0]) if c != self.missing]
        return full[keep], full[self.missing : self.missing + 1]


FRAMEWORK_CLASSES: dict[str, type[Framework]] = {cls.name: cls for cls in (Pix2Pix, L1, PGAN, MMGAN, MedSynth)}


def build_framework(config: TrainConfig, model_config: ModelConfig, metadata: dict[str, Any], device: torch.device,
                    rank: int = 0) -> Framework:
    """The framework ``config.framework`` names, for this generator and data."""
    return FRAMEWORK_CLASSES[config.framework](config, model_config, metadata, device, rank)
