"""The background rule shared by synthesis and evaluation: where no input has signal, the output has none."""

from __future__ import annotations

import numpy as np


def outside_inputs_to_zero(synthesis: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """Zero the synthesis wherever every input is exactly 0 (the background of skull-stripped scans), in place.

    The network paints low float noise there, highest at the brain's edge: values no scan of the target would
    hold, which compress badly (outputs were several times their inputs' size) and which metrics on stripped
    ground truth count as error; the regression baseline of scripts/ was always zeroed there. ``synthesis`` is (N, Y, X), ``inputs`` (N, C, Y, X) on the same grid;
    ``synthesize`` and ``eval`` both apply it, so ``eval`` scores what ``synthesize`` writes.
    """
    synthesis[~np.any(inputs != 0, axis=1)] = 0.0
    return synthesis
