"""Discriminators: pix2pix's 70x70 PatchGAN (Isola et al. 2017), conditioned on the generator's inputs, and
MedSynth's image-level CNN classifier (Nie et al. 2018)."""

from __future__ import annotations

from torch import Tensor, nn


class PatchGAN(nn.Module):
    """C64-C128-C256-C512 with 4x4 convs; each output logit judges one 70x70 patch of [inputs, image].

    ``out_channels`` > 1 gives one map per channel: mmGAN judges each contrast of an imputed set on its own.
    """

    def __init__(self, in_channels: int, width: int = 64, layers: int = 3, out_channels: int = 1) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        channels = width
        for i in range(1, layers + 1):
            out = width * min(2**i, 8)
            stride = 2 if i < layers else 1
            blocks += [
                nn.Conv2d(channels, out, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(0.2, True),
            ]
            channels = out
        blocks.append(nn.Conv2d(channels, out_channels, 4, stride=1, padding=1))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ImageCritic(nn.Module):
    """MedSynth's discriminator: three conv stages (5x5 conv, batch norm, ReLU, 2x2 max pooling; 32, 64, 128
    filters) and three fully connected layers (512, 128, 1) giving one logit per image: real target or synthesis.

    The paper's classifier sees fixed-size patches; an adaptive average pooling to 4x4 before the fully connected
    layers lets it judge crops or slices of any size with the same weights.
    """

    def __init__(self, in_channels: int = 1, widths: tuple[int, int, int] = (32, 64, 128)) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            blocks += [nn.Conv2d(channels, width, 5, padding=2, bias=False), nn.BatchNorm2d(width), nn.ReLU(True),
                       nn.MaxPool2d(2)]
            channels = width
        blocks.append(nn.AdaptiveAvgPool2d(4))
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(channels * 16, 512), nn.ReLU(True),
                                        nn.Linear(512, 128), nn.ReLU(True), nn.Linear(128, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
