"""Turn a ``--model`` value into a verified local checkpoint file.

Why this module exists: a checkpoint may come from a bundled file, the Hugging Face Hub or a user's disk, and
every caller (synthesize, eval, push) must get the same answers to "which file?" and "can I trust its bytes?".
Downloads go through ``huggingface_hub`` (its cache, ``HF_HOME``, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and token
handling are what Hub users already know); registry pins are checked by sha256 before anything reads the file,
and a downloaded file that fails its pin is removed from the cache so that it is never used and the next call
downloads it again. Nothing here unpickles: loading is left to :mod:`mrsynth.checkpoint` (safetensors only).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

from mrsynth.checkpoint import CONVERT_HINT, PICKLE_SUFFIXES
from mrsynth.errors import InputError, MrsynthWarning
from mrsynth.hub.registry import default_entry, find_entry, load_deprecations, load_registry, weights_dir

HF_SCHEME = "hf://"
DEFAULT_FILENAME = "model.safetensors"
_MODELS_HINT = "run `mrsynth models` to list registered models, or pass a .safetensors path or hf://OWNER/REPO"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks (checkpoints can be larger than what should sit in memory twice)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def verify_file(path: Path, sha256: str, size: int | None = None, label: str | None = None) -> None:
    """Raise :class:`InputError` naming the file unless its size and sha256 are the pinned ones."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        problem = f"size {actual_size} bytes differs from the pinned {size} bytes"
    else:
        digest = sha256_file(path)
        if digest == sha256:
            return
        problem = f"sha256 {digest[:12]}... differs from the pinned {sha256[:12]}..."
    raise InputError(label or path, f"checksum failed, file refused: {problem}",
                     "the file was altered or truncated; download or copy it again, or fix the registry pin")


def parse_hf_spec(spec: str) -> dict[str, str]:
    """``hf://OWNER/REPO[/FILE][@REV]`` (this project's form) or huggingface_hub's ``hf://OWNER/REPO[@REV][/FILE]``.

    Returns repo_id, repo_type, filename (default ``model.safetensors``) and revision (default ``main``).
    """
    from huggingface_hub import parse_hf_uri
    from huggingface_hub.errors import HfUriError

    try:
        uri = parse_hf_uri(spec)
    except HfUriError as exc:
        raise InputError(spec, f"not a Hub file reference ({exc.msg})",
                         "write hf://OWNER/REPO[/FILE][@REVISION]") from None
    if uri.is_bucket:
        raise InputError(spec, "buckets are not model repositories", "write hf://OWNER/REPO[/FILE][@REVISION]")
    filename, revision = uri.path_in_repo, uri.revision
    if revision is None and "@" in filename:
        filename, _, revision = filename.rpartition("@")
    if revision == "":
        raise InputError(spec, "empty revision after '@'", "write a branch, tag or commit sha after '@', or drop it")
    return {"repo_id": uri.id, "repo_type": uri.type, "filename": filename.strip("/") or DEFAULT_FILENAME,
            "revision": revision or "main"}


def resolve_model(spec: str | None, inputs: list[str] | None = None, target: str | None = None) -> Path:
    """The local, verified checkpoint file that ``--model spec`` names.

    - None: the registry's default model for ``inputs`` (and ``target``);
    - a registry name: its bundled file or its pinned Hub file, sha256-checked;
    - ``hf://OWNER/REPO[/FILE][@REV]``: downloaded into the huggingface_hub cache (no pin, no checksum);
    - anything else: a local file path (pickles refused).
    """
    if spec is None:
        return resolve_entry(default_entry(list(inputs or []), target))
    if spec.startswith(HF_SCHEME):
        ref = parse_hf_spec(spec)
        _refuse_pickle_name(ref["filename"], spec)
        return download(ref["repo_id"], ref["filename"], ref["revision"], ref["repo_type"], label=spec)
    entry = find_entry(spec, load_registry())
    if entry is not None:
        return resolve_entry(entry)
    deprecated = load_deprecations().get(spec)
    if deprecated is not None and "renamed_to" in deprecated:
        warnings.warn(f"model {spec!r} was renamed to {deprecated['renamed_to']!r}; use the new name",
                      MrsynthWarning, stacklevel=2)
        return resolve_model(deprecated["renamed_to"])
    if deprecated is not None:
        raise InputError(spec, f"this model was retired ({deprecated['why']})",
                         f"use {deprecated['replaced_by']} instead; `mrsynth models` lists every model")
    path = Path(spec).expanduser()
    _refuse_pickle_name(path.name, spec)
    if path.is_dir():
        raise InputError(spec, "is a folder, not a checkpoint file", "pass the .safetensors file inside it")
    if not path.is_file():
        raise InputError(spec, "no such registered model or checkpoint file", _MODELS_HINT)
    return path


def resolve_entry(entry: dict[str, Any]) -> Path:
    """The verified local file of one registry entry (downloaded first when it lives on the Hub)."""
    if entry["source"] == "bundled":
        path = weights_dir() / entry["file"]
        if not path.is_file():
            raise InputError(path, f"bundled weights of model {entry['name']!r} are missing",
                             "reinstall mrsynth, or restore the file in your checkout")
        verify_file(path, entry["sha256"], entry["size"], label=path)
        return path
    hub = entry["hub"]
    label = f"hf://{hub['repo']}/{hub['file']}@{hub['revision']}"
    path = download(hub["repo"], hub["file"], hub["revision"], label=label)
    try:
        verify_file(path, entry["sha256"], entry["size"], label=label)
    except InputError as exc:
        _evict(path)
        problem = exc.problem + " (removed from the Hugging Face cache; the next run downloads it again)"
        raise InputError(exc.source, problem,
                         "if it fails again, the pinned commit or sha256 in the registry is wrong") from None
    return path


def download(repo_id: str, filename: str, revision: str = "main", repo_type: str = "model",
             label: str | None = None) -> Path:
    """``hf_hub_download`` into the huggingface_hub cache, its errors turned into one clear :class:`InputError`."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    label = label or f"hf://{repo_id}/{filename}@{revision}"
    token_hint = "if it is private or gated, log in with `hf auth login` or set HF_TOKEN"
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, repo_type=repo_type))
    except LocalEntryNotFoundError:
        if constants.is_offline_mode():
            raise InputError(label, f"not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE=1 "
                             "forbids downloading", "run once online (or unset HF_HUB_OFFLINE), or pass a local "
                             ".safetensors path") from None
        raise InputError(label, f"could not reach {constants.ENDPOINT} and the file is not in the cache "
                         f"({constants.HF_HUB_CACHE})", "check the network, HF_ENDPOINT and proxy settings; "
                         "HF_HUB_OFFLINE=1 uses cached files only") from None
    except GatedRepoError:
        raise InputError(label, "the repository is gated", f"accept its terms on the Hub; {token_hint}") from None
    except RepositoryNotFoundError:
        raise InputError(label, f"repository {repo_id} not found on {constants.ENDPOINT}", token_hint) from None
    except RevisionNotFoundError:
        raise InputError(label, f"revision {revision!r} not found in {repo_id}",
                         "check the branch, tag or commit") from None
    except EntryNotFoundError:
        raise InputError(label, f"file {filename!r} not found in {repo_id}@{revision}",
                         f"name the file: hf://{repo_id}/FILE.safetensors") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise InputError(label, f"the Hub answered HTTP {status}", token_hint if status in (401, 403) else
                         "try again later") from None
    except OSError as exc:  # disk full, unwritable cache, truncated transfer
        raise InputError(label, f"download failed ({exc})", "check free space and HF_HOME permissions") from None


def _refuse_pickle_name(name: str, spec: str) -> None:
    if Path(name).suffix.lower() in PICKLE_SUFFIXES:
        raise InputError(spec, "pickled checkpoints are never loaded", CONVERT_HINT)


def _evict(pointer: Path) -> None:
    """Remove a downloaded file from the Hub cache: the snapshot entry and the blob it points to."""
    blob = pointer.resolve()
    for path in {pointer, blob}:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
