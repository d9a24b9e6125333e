"""Subject-level train/val/test splits: from counts or fractions and a seed, or from a split file.

Why subject level: slices of one subject are strongly correlated, so a slice-level split would leak test anatomy
into training. Why hash ranking instead of a shuffled list: the order of a subject depends only on (seed, subject
id), so the split is identical on every machine and numpy version, and adding a subject to the dataset does not
reshuffle the others.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

from mrsynth.errors import InputError

SPLITS = ("train", "val", "test")
SPLIT_HINT = "write TRAIN,VAL,TEST as counts (500,40,40) or fractions (0.8,0.1,0.1)"


def parse_split(text: str) -> tuple[str, tuple[float, float, float]]:
    """``"500,40,40"`` -> ("counts", ...), ``"0.8,0.1,0.1"`` -> ("fractions", ...); a decimal point means fractions."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3 or not all(parts):
        raise InputError("--split", f"expected three values, got {text!r}", SPLIT_HINT)
    fractional = any(("." in p or "e" in p.lower()) for p in parts)
    try:
        values = tuple(float(p) if fractional else int(p) for p in parts)
    except ValueError:
        raise InputError("--split", f"not numbers: {text!r}", SPLIT_HINT) from None
    if any(v < 0 or not math.isfinite(v) for v in values):
        raise InputError("--split", f"values must be non-negative, got {text!r}", SPLIT_HINT)
    if fractional and sum(values) > 1 + 1e-6:
        raise InputError("--split", f"fractions add up to {sum(values):g} > 1", SPLIT_HINT)
    if sum(values) == 0:
        raise InputError("--split", "all three parts are zero", SPLIT_HINT)
    return ("fractions" if fractional else "counts"), values  # type: ignore[return-value]


def split_sizes(text: str, n_subjects: int) -> tuple[tuple[int, int, int], str | None]:
    """How many subjects go to train/val/test, and a note when counts had to be shrunk to fit ``n_subjects``.

    Counts that fit are used as given (leftover subjects stay unused, as the paper used 580 of 1251 BraTS cases);
    counts that do not fit, and fractions, are apportioned by largest remainder so the parts keep their ratio.
    """
    kind, values = parse_split(text)
    if kind == "counts":
        wanted = [int(v) for v in values]
        if sum(wanted) <= n_subjects:
            return (wanted[0], wanted[1], wanted[2]), None
        total = n_subjects
        shares = [v * n_subjects / sum(wanted) for v in wanted]
        note = f"--split {text} asks for {sum(wanted)} subjects but {n_subjects} are usable; scaled down"
    else:
        total = min(n_subjects, round(sum(values) * n_subjects))
        shares = [v * n_subjects for v in values]
        note = None
    sizes = [math.floor(s) for s in shares]
    by_remainder = sorted(range(3), key=lambda i: (-(shares[i] - sizes[i]), i))
    for i in by_remainder[: max(0, total - sum(sizes))]:
        sizes[i] += 1
    return (sizes[0], sizes[1], sizes[2]), note


def assign_split(subjects: list[str], text: str, seed: int) -> tuple[dict[str, str], str | None]:
    """subject -> "train" | "val" | "test" for as many subjects as the sizes ask; same seed, same split."""
    sizes, note = split_sizes(text, len(subjects))
    ranked = sorted(subjects, key=lambda s: (hashlib.sha256(f"{seed}:{s}".encode()).hexdigest(), s))
    split: dict[str, str] = {}
    start = 0
    for name, size in zip(SPLITS, sizes):
        for subject in ranked[start:start + size]:
            split[subject] = name
        start += size
    return dict(sorted(split.items())), note


def read_split_file(path: str | Path) -> dict[str, str]:
    """Read subject -> split from JSON (``{"S1": "train"}`` or ``{"train": ["S1"], ...}``) or CSV ``subject,split``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "split file not found", "give a JSON or CSV file mapping subject to train/val/test")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read split file ({exc})") from None
    pairs: list[tuple[str, str]] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(path, f"not valid JSON ({exc})") from None
        if isinstance(data, dict) and set(data) <= set(SPLITS) and all(isinstance(v, list) for v in data.values()):
            pairs = [(str(s), name) for name, members in data.items() for s in members]
        elif isinstance(data, dict):
            pairs = [(str(s), str(v)) for s, v in data.items()]
        else:
            raise InputError(path, "JSON must be an object", '{"subject": "train", ...} or {"train": [...], ...}')
    else:
        rows = [r for r in csv.reader(text.splitlines()) if any(c.strip() for c in r)]
        if not rows or [c.strip().lower() for c in rows[0][:2]] != ["subject", "split"]:
            raise InputError(path, "CSV must start with the header subject,split")
        pairs = [(r[0].strip(), r[1].strip().lower() if len(r) > 1 else "") for r in rows[1:]]
    split: dict[str, str] = {}
    for subject, name in pairs:
        if name not in SPLITS:
            raise InputError(path, f"subject {subject!r} has split {name!r}", f"use one of {', '.join(SPLITS)}")
        if split.setdefault(subject, name) != name:
            raise InputError(path, f"subject {subject!r} is in two splits")
    if not split:
        raise InputError(path, "split file lists no subjects")
    return dict(sorted(split.items()))
