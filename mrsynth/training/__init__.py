"""Training: pix2pix / L1 loops for AGI-Net and ResUnet, from one CPU process to multi-GPU DDP.

A notebook calls :func:`train` with any torch ``Dataset`` of ``(x (C_in, H, W), y (1, H, W))`` pairs in [0, 1];
the ``mrsynth train`` command only builds those datasets from a slice store and parses flags.
"""

from mrsynth.training.config import TrainConfig
from mrsynth.training.trainer import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
