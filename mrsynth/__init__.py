"""mrsynth: synthesize a missing MRI contrast with AGI-Net.

The package imports nothing heavy at the top level so that ``mrsynth --help`` answers instantly;
``mrsynth.synthesize`` and friends load torch only when they are first used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "synthesize"]


def synthesize(*args: Any, **kwargs: Any) -> Any:
    """Synthesize a missing contrast for one subject; see :func:`mrsynth.inference.synthesize`."""
    from mrsynth.inference import synthesize as _synthesize

    return _synthesize(*args, **kwargs)
