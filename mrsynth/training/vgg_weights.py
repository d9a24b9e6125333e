"""Where pGAN's VGG16 ImageNet weights come from: a file the user names, torchvision's cache, or torchvision.

Order, first that works wins:
1. ``--vgg-weights PATH``: a safetensors file, or a torchvision ``.pth`` state dict (read with
   ``torch.load(..., weights_only=True)``, which builds tensors and refuses to run pickled code);
2. torchvision's download cache (``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth``), read directly, so a cached
   file serves even where torchvision itself does not import;
3. torchvision's weight API (``VGG16_Weights.IMAGENET1K_V1``), which downloads into that cache.
Otherwise one :class:`InputError` says what to do. Why so careful: a training run must never stall on, or
silently depend on, a download, and the tests use a small locally made stand-in file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mrsynth.errors import InputError
from mrsynth.training.perceptual import vgg16_features

TORCHVISION_FILE = "vgg16-397923af.pth"
"""The file name of torchvision's ``VGG16_Weights.IMAGENET1K_V1`` in its download cache."""

OPTION = "--vgg-weights"


def torchvision_cache_file() -> Path:
    """Where torchvision keeps (or would download) the VGG16 ImageNet weights: torch hub's checkpoint folder."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE


def feature_network(layer: str, path: str | Path | None = None) -> nn.Sequential:
    """VGG16's trunk up to ``layer`` with ImageNet weights (see the module docstring for where they come from)."""
    network = vgg16_features(layer)
    if path is not None:
        state, source = read_state_dict(Path(path)), Path(path)
    elif torchvision_cache_file().is_file():
        state, source = read_state_dict(torchvision_cache_file()), torchvision_cache_file()
    else:
        state, source = _from_torchvision(), torchvision_cache_file()
    _load_trunk(network, state, source, layer)
    return network


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file or of a ``.pth`` state dict (``weights_only=True``: no code runs)."""
    if not path.is_file():
        raise InputError(path, "VGG16 weights file not found", "check the path given to --vgg-weights")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors, zipfile and the unpickler raise their own error types
        raise InputError(path, f"cannot read VGG16 weights ({type(exc).__name__}: {exc})",
                         "give a safetensors file or a torchvision .pth state dict") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(path, "is not a state dict of tensors",
                         "give a safetensors file or a torchvision .pth state dict")
    return state


def _load_trunk(network: nn.Sequential, state: dict[str, Any], source: Path, layer: str) -> None:
    """Load the trunk's parameters from a full-model (``features.0.weight``) or trunk-only (``0.weight``) state
    dict; layers past ``layer`` and the classifier are ignored, so a file holding only the needed layers works."""
    trunk = {key.removeprefix("features."): value for key, value in state.items()
             if key.startswith("features.") or key.split(".")[0].isdigit()}
    wanted = network.state_dict()
    missing = [key for key in wanted if key not in trunk]
    if missing:
        raise InputError(source, f"lacks VGG16 feature weights up to {layer} (first missing: {missing[0]})",
                         "give torchvision's vgg16 state dict or a file with its features.* tensors")
    wrong = [key for key in wanted if tuple(trunk[key].shape) != tuple(wanted[key].shape)]
    if wrong:
        raise InputError(source, f"{wrong[0]} has shape {tuple(trunk[wrong[0]].shape)}, VGG16 has "
                         f"{tuple(wanted[wrong[0]].shape)}", "give VGG16 (not VGG19 or another network) weights")
    network.load_state_dict({key: trunk[key].float() for key in wanted})


def _from_torchvision() -> dict[str, torch.Tensor]:
    """torchvision's weight API (it downloads into the cache), or the one-line error when that cannot work."""
    cache = torchvision_cache_file()
    hint = (f"pass {OPTION} FILE (a safetensors file or torchvision's {TORCHVISION_FILE}), or put that file in "
            f"{cache.parent}")
    try:
        from torchvision.models import VGG16_Weights
    except Exception as exc:  # ImportError, or the RuntimeError of a torchvision built for another torch
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise InputError(OPTION, f"pgan needs VGG16 ImageNet weights: none in torchvision's cache ({cache}) and "
                                 f"torchvision does not import ({reason})", hint) from None
    try:
        return VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except Exception as exc:  # URLError, HTTPError, OSError, a corrupt partial download
        raise InputError(OPTION, f"pgan needs VGG16 ImageNet weights and torchvision could not download them "
                                 f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]})", hint) from None

