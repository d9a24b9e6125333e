"""The canonical contrast names of the command-line contract (``shared/spec/cli.md``) and their common spellings.

One definition for every layer: file discovery, dataset layouts, scenarios in the registry and checkpoints all
name contrasts ``t1``, ``t1c``, ``t2``, ``pd``, ``flair``, in this order.
"""

from __future__ import annotations

CONTRASTS: tuple[str, ...] = ("t1", "t1c", "t2", "pd", "flair")
CONTRAST_ALIASES: dict[str, str] = {
    **{c: c for c in CONTRASTS},
    "t1n": "t1", "t1w": "t1", "t2w": "t2", "t2f": "flair", "fla": "flair", "pdw": "pd",
    "t1ce": "t1c", "t1gd": "t1c", "t1post": "t1c",
}


def canonical_contrast(name: str) -> str | None:
    """``t1n``/``T1w``/``T1`` -> ``t1`` and so on; None for names that are no known contrast."""
    return CONTRAST_ALIASES.get(name.strip().lower())
