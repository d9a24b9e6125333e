"""pGAN's perceptual loss (Dar et al. 2019, Sec. II-A): the L1 distance between VGG16 feature maps of the synthesised
and the real target, ``L_perc = E[ || V(y) - V(G(x)) ||_1 ]``, V a VGG16 pre-trained on ImageNet and frozen.

Why the network is built here in plain torch: torchvision does not import on every install (a CUDA build of it
next to a CPU torch fails with ``operator torchvision::nms does not exist``), and only the convolutional trunk is
needed. :func:`vgg16_features` has the layer layout of torchvision's ``vgg16().features`` (same indices, same
parameter names), so torchvision's state dict loads into it; :mod:`mrsynth.training.vgg_weights` finds one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

VGG16_LAYOUT: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                                       512, 512, 512, "M")
"""Configuration "D" of Simonyan and Zisserman (2015): 3x3 convs (padding 1) each followed by a ReLU, "M" = 2x2 max
pooling, exactly as torchvision's ``vgg16().features`` lays them out."""

FEATURE_LAYERS: dict[str, int] = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22, "relu5_3": 29}
"""Index in ``vgg16().features`` of the last module of each block's last ReLU: the feature maps one can take."""

DEFAULT_LAYER = "relu1_2"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg16_features(layer: str = DEFAULT_LAYER) -> nn.Sequential:
    """VGG16's convolutional trunk up to and including ``layer`` (torchvision's indices and parameter names)."""
    if layer not in FEATURE_LAYERS:
        raise ValueError(f"unknown VGG16 feature layer {layer!r}; choose one of {', '.join(FEATURE_LAYERS)}")
    modules: list[nn.Module] = []
    channels = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            modules += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = int(item)
    return nn.Sequential(*modules[: FEATURE_LAYERS[layer] + 1])


class PerceptualLoss(nn.Module):
    """``mean |V(y) - V(y_hat)|`` over the feature maps of a frozen VGG16 trunk (pGAN's L_perc).

    A grey-value slice in [0, 1] becomes VGG's input the way an ImageNet photograph does: repeated into three
    channels and standardised with ImageNet's channel means and deviations.
    """

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        self.features = features.eval()
        for parameter in self.features.parameters():
            parameter.requires_grad_(False)

    def embed(self, image: Tensor) -> Tensor:
        """(B, 1, H, W) in [0, 1] -> VGG16 feature maps at the chosen layer."""
        mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
        return self.features((image.expand(-1, 3, -1, -1) - mean) / std)

    def forward(self, fake: Tensor, target: Tensor) -> Tensor:
        with torch.no_grad():
            real_features = self.embed(target)
        return F.l1_loss(self.embed(fake), real_features)
