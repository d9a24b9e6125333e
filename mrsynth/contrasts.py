"""The canonical contrast names of the command-line contract (``shared/spec/cli.md``) and their common spellings.

One definition for every layer: file discovery, dataset layouts, scenarios in the registry and checkpoints all
name contrasts ``t1``, ``t1c``, ``t2``, ``pd``, ``flair``, in this order.
"""

from __future__ import annotations

import re
from pathlib import Path

CONTRASTS: tuple[str, ...] = ("t1", "t1c", "t2", "pd", "flair")
CONTRAST_ALIASES: dict[str, str] = {
    **{c: c for c in CONTRASTS},
    "t1n": "t1", "t1w": "t1", "t2w": "t2", "t2f": "flair", "fla": "flair", "pdw": "pd",
    "t1ce": "t1c", "t1gd": "t1c", "t1post": "t1c",
}


def canonical_contrast(name: str) -> str | None:
    """``t1n``/``T1w``/``T1`` -> ``t1`` and so on; None for names that are no known contrast."""
    return CONTRAST_ALIASES.get(name.strip().lower())


_IMAGE_EXTENSION = re.compile(r"\.(nii\.gz|nii|mha|mhd|nrrd|nhdr|mgz|mgh|png)$", re.I)
_NAME_TOKENS = re.compile(r"[-_.]")


def contrast_from_filename(path: str | Path) -> str | None:
    """The contrast an output file name announces, or None when it names none.

    The rule is the one file-naming conventions share: the contrast is the LAST word of the name, after the
    last ``_``, ``-`` or ``.`` (``pd.nii.gz``, ``sub-01_FLAIR.nii.gz`` and BIDS suffixes, BraTS ``case-t2f``,
    IXI ``IXI002-Guys-0828-PD``), and a BIDS ``ce-<agent>`` entity turns a ``T1w`` into ``t1c``
    (``sub-01_ce-gd_T1w``). Words elsewhere in the name (``t1_to_t2_synth``) say nothing: a name that only
    mentions a contrast in passing must not silently pick the model.
    """
    stem = _IMAGE_EXTENSION.sub("", Path(path).name)
    words = [w for w in _NAME_TOKENS.split(stem) if w]
    if not words:
        return None
    contrast = CONTRAST_ALIASES.get(words[-1].lower())
    if contrast == "t1" and re.search(r"(^|_)ce-[A-Za-z0-9]+_", stem):
        return "t1c"
    return contrast
