"""The model registry: one human-edited TOML file (``weights/registry.toml``) naming the models mrsynth knows.

Why TOML and a strict check on load: the file is edited by hand when a model is trained or published, and a typo
(a missing sha256, a branch name where a commit should be pinned, two defaults for one scenario) must fail loudly
with the key and entry named, not silently change which weights a user gets. The file format is documented in
the header of the registry file itself and in docs/models.md.

Where ``weights/`` is found, first match wins:
1. ``$MRSYNTH_WEIGHTS_DIR`` (a private registry, tests, a shared lab folder);
2. ``weights/`` next to the ``mrsynth/`` package folder (a git checkout or an editable install);
3. ``<prefix>/share/mrsynth/weights`` for an installed wheel, with prefix ``sys.prefix`` or the user base
   (pyproject.toml ``[tool.setuptools.data-files]`` copies the registry, bundled files and cards there; package
   discovery stays untouched, which a ``package-dir`` mapping of a top-level folder would not allow).
"""

from __future__ import annotations

import os
import re
import site
import sys
import tomllib
from pathlib import Path
from typing import Any

from mrsynth.contrasts import CONTRASTS
from mrsynth.errors import InputError

REGISTRY_FILE = "registry.toml"
WEIGHTS_ENV = "MRSYNTH_WEIGHTS_DIR"
ARCHS = ("agi-net", "resunet")

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_FILE = re.compile(r"^[\w.-]+\.safetensors$")
_CARD = re.compile(r"^cards/[\w.-]+\.md$")
_REQUIRED = ("name", "scenario", "arch", "sha256", "size", "licence", "card")
_OPTIONAL = ("file", "hub", "default", "metrics")
_HUB_KEYS = ("repo", "file", "revision")
_FORMAT_HINT = "see the comment header of registry.toml or docs/models.md"


def weights_dir() -> Path:
    """The folder holding the registry, the bundled checkpoints and their model cards."""
    override = os.environ.get(WEIGHTS_ENV)
    if override:
        return Path(override).expanduser()
    checkout = Path(__file__).resolve().parents[2] / "weights"
    installed = [Path(base) / "share" / "mrsynth" / "weights" for base in (sys.prefix, site.getuserbase())]
    for candidate in (checkout, *installed):
        if (candidate / REGISTRY_FILE).is_file():
            return candidate
    return checkout


def registry_path() -> Path:
    """The registry file that :func:`load_registry` reads."""
    return weights_dir() / REGISTRY_FILE


def parse_scenario(text: str) -> tuple[list[str], str]:
    """``"t1,t2->pd"`` -> (["t1", "t2"], "pd"); ValueError names what is wrong."""
    inputs_text, arrow, target = text.replace(" ", "").partition("->")
    inputs = [c for c in inputs_text.split(",") if c]
    if not arrow or not inputs or not target:
        raise ValueError(f"scenario {text!r} is not written 'in1,in2->target'")
    unknown = [c for c in (*inputs, target) if c not in CONTRASTS]
    if unknown:
        raise ValueError(f"scenario {text!r} has unknown contrast(s) {unknown}; known: {', '.join(CONTRASTS)}")
    if target in inputs or len(set(inputs)) != len(inputs):
        raise ValueError(f"scenario {text!r} repeats a contrast")
    return inputs, target


def load_registry(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Every registry entry, checked, as dicts in file order.

    Each dict has the file's keys plus ``inputs`` (list), ``target``, ``source`` ("bundled" or "hub"),
    ``default`` (bool) and ``metrics`` (dict, possibly empty). A missing registry file is an empty registry.
    """
    path = Path(path) if path is not None else registry_path()
    if not path.is_file():
        return []
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(path, f"unreadable registry ({exc})", _FORMAT_HINT) from None
    unknown = sorted(set(data) - {"model", "renamed", "retired"})
    if unknown:
        raise InputError(path, f"unknown table(s) {unknown}", _FORMAT_HINT)
    models = data.get("model", [])
    if not isinstance(models, list):
        raise InputError(path, "'model' must be an array of tables ([[model]])", _FORMAT_HINT)
    entries = [_check_entry(path, i, raw) for i, raw in enumerate(models)]
    _check_unique(path, entries)
    return entries


def load_deprecations(path: str | Path | None = None) -> dict[str, dict[str, str]]:
    """Old model names: ``{old: {"renamed_to": new}}`` from ``[renamed]``, ``{old: {"replaced_by": new, "why":
    text}}`` from ``[retired]``.

    Why: a name in a paper's methods section or a lab's batch script must keep meaning something after a model
    is renamed (it resolves to the new name, with a warning) or retired (it fails, naming what replaced it), as
    timm's deprecated model names do. Targets must be registered models, checked here.
    """
    path = Path(path) if path is not None else registry_path()
    if not path.is_file():
        return {}
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    names = {entry["name"] for entry in load_registry(path)}
    found: dict[str, dict[str, str]] = {}
    for old, new in data.get("renamed", {}).items():
        found[old] = {"renamed_to": str(new)}
    for old, info in data.get("retired", {}).items():
        if not isinstance(info, dict) or sorted(info) != ["replaced_by", "why"]:
            raise InputError(path, f"retired model {old!r} needs {{ replaced_by = NAME, why = TEXT }}", _FORMAT_HINT)
        found[old] = {"replaced_by": str(info["replaced_by"]), "why": str(info["why"])}
    for old, info in found.items():
        new = info.get("renamed_to") or info["replaced_by"]
        if old in names:
            raise InputError(path, f"{old!r} is both a model and a deprecated name", _FORMAT_HINT)
        if new not in names:
            raise InputError(path, f"deprecated name {old!r} points to {new!r}, which is not a registered model",
                             _FORMAT_HINT)
    return found


def find_entry(name: str, entries: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The registry entry called ``name``, or None."""
    for entry in load_registry() if entries is None else entries:
        if entry["name"] == name:
            return entry
    return None


def default_entry(inputs: list[str], target: str | None = None) -> dict[str, Any]:
    """The model to use when ``--model`` is not given: the entry marked default for these inputs (and target).

    Inputs match as a set (the caller reorders its volumes into the model's channel order). Without a target,
    several defaults for the same inputs (t1,t2->pd and t1,t2->flair) are ambiguous and the user must choose.
    When no model takes exactly these inputs, the one default that needs only some of them is used (a BraTS
    folder offers t1, t1c, t2 and flair; a t1,t2->flair default fits).
    """
    entries = load_registry()
    wanted = sorted(inputs)
    fits = [e for e in entries if sorted(e["inputs"]) == wanted and (target is None or e["target"] == target)]
    chosen = [e for e in fits if e["default"]] or (fits if len(fits) == 1 else [])
    if not chosen:
        subset = [e for e in entries if e["default"] and set(e["inputs"]) <= set(inputs)
                  and (e["target"] == target if target else e["target"] not in inputs)]
        chosen = subset if len(subset) == 1 else []
    asked = f"{','.join(inputs)}->{target or '?'}"
    if len(chosen) == 1:
        return chosen[0]
    if len(chosen) > 1:
        targets = ", ".join(sorted(e["target"] for e in chosen))
        raise InputError("--target", f"several default models take {','.join(inputs)} (targets: {targets})",
                         "choose one with --target, or name a model with --model")
    known = ", ".join(sorted({e["scenario"] for e in entries})) or "none"
    raise InputError("--model", f"no registered default model for {asked} (registered scenarios: {known})",
                     "run `mrsynth models` to list models, or pass --model NAME, a .safetensors path or "
                     "hf://OWNER/REPO")


def targets_for(inputs: list[str]) -> list[str]:
    """Every contrast some registered model synthesizes from (a subset of) ``inputs``: what ``--target`` or the
    output's name can choose among."""
    return sorted({e["target"] for e in load_registry() if set(e["inputs"]) <= set(inputs)
                   and e["target"] not in inputs})


def _check_entry(path: Path, index: int, raw: Any) -> dict[str, Any]:
    label = f"model #{index + 1}"

    def fail(problem: str) -> InputError:
        return InputError(path, f"{label}: {problem}", _FORMAT_HINT)

    if not isinstance(raw, dict):
        raise fail("is not a table")
    label = f"model {raw.get('name', f'#{index + 1}')!r}"
    missing = [k for k in _REQUIRED if k not in raw]
    unknown = [k for k in raw if k not in _REQUIRED + _OPTIONAL]
    if missing or unknown:
        raise fail(f"missing key(s) {missing}" if missing else f"unknown key(s) {unknown}")
    if not isinstance(raw["name"], str) or not _NAME.match(raw["name"]):
        raise fail("name must be lower-case letters, digits, '.', '_' or '-'")
    try:
        inputs, target = parse_scenario(str(raw["scenario"]))
    except ValueError as exc:
        raise fail(str(exc)) from None
    if raw["arch"] not in ARCHS:
        raise fail(f"arch {raw['arch']!r} is not one of {', '.join(ARCHS)}")
    if not isinstance(raw["sha256"], str) or not _SHA256.match(raw["sha256"]):
        raise fail("sha256 must be 64 lower-case hex digits")
    if not isinstance(raw["size"], int) or isinstance(raw["size"], bool) or raw["size"] <= 0:
        raise fail("size must be a positive number of bytes")
    if ("file" in raw) == ("hub" in raw):
        raise fail("give exactly one source: file = '...' (bundled) or hub = { repo, file, revision }")
    entry = dict(raw, inputs=inputs, target=target, default=bool(raw.get("default", False)),
                 metrics=dict(raw.get("metrics", {})))
    if not isinstance(raw["card"], str) or not _CARD.match(raw["card"]):
        raise fail("card must be cards/NAME.md (wheels ship weights/cards/*.md)")
    if "file" in raw:
        if not isinstance(raw["file"], str) or not _FILE.match(raw["file"]):
            raise fail("file must be a .safetensors file name directly in weights/ (wheels ship weights/*.safetensors)")
        entry["source"] = "bundled"
    else:
        hub = raw["hub"]
        if not isinstance(hub, dict) or sorted(hub) != sorted(_HUB_KEYS):
            raise fail(f"hub must be a table with exactly {', '.join(_HUB_KEYS)}")
        if not isinstance(hub["revision"], str) or not _COMMIT.match(hub["revision"]):
            raise fail("hub.revision must pin a 40-hex commit sha (a branch can move under the sha256)")
        entry["source"] = "hub"
    return entry


def _check_unique(path: Path, entries: list[dict[str, Any]]) -> None:
    names: set[str] = set()
    defaults: set[tuple[tuple[str, ...], str]] = set()
    for entry in entries:
        if entry["name"] in names:
            raise InputError(path, f"model name {entry['name']!r} is used twice", _FORMAT_HINT)
        names.add(entry["name"])
        key = (tuple(sorted(entry["inputs"])), entry["target"])
        if entry["default"]:
            if key in defaults:
                raise InputError(path, f"two models are default for {entry['scenario']}", "keep default = true on one")
            defaults.add(key)

