"""The resume state: one ``.safetensors`` file, tensors as tensors, everything else as JSON in its header.

Why not ``torch.save``: loading a pickle runs code, and a run directory is easily copied around. Nested state
dicts (model, optimiser, grad scaler, RNG) are flattened: each tensor is stored under its path and replaced in a
JSON skeleton by ``{"__tensor__": path}``; dicts are stored as key/value lists so integer keys (optimiser
parameter ids) come back as integers, and tuples as tuples. Writing is atomic (temp file + ``os.replace``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mrsynth.errors import InputError
from mrsynth.io.atomic import atomic_output

STATE_KEY = "mrsynth_resume"
STATE_FORMAT = 1


def _flatten(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = path or "tensor"
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _flatten(v, f"{path}.{k}" if path else str(k), tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {path!r} in a resume state")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
        return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a nested state dict atomically."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, "", tensors)
    header = json.dumps({"format": STATE_FORMAT, "state": skeleton})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=True) as tmp:
        save_file(tensors, str(tmp), metadata={STATE_KEY: header})
    return path


def load_state(path: str | Path) -> dict[str, Any]:
    """Read a state written by :func:`save_state` (no pickle: safetensors + JSON only)."""
    path = Path(path)
    skeleton = _read_skeleton(path)
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise InputError(path, f"unreadable resume state ({type(exc).__name__}: {exc})", "start a new run") from None
    return _unflatten(skeleton, tensors)


def read_state_fields(path: str | Path, names: tuple[str, ...]) -> dict[str, Any]:
    """Top-level entries of a state that hold no tensors (configs, iteration), read from the header alone: what
    ``--resume`` checks the command line against before loading a paper-sized optimiser state."""
    entries = dict(_read_skeleton(Path(path))["__dict__"])
    return {name: _unflatten(entries[name], {}) for name in names if name in entries}


def _read_skeleton(path: Path) -> Any:
    """The JSON skeleton of a state file, with its errors as InputErrors that name the file."""
    from safetensors import safe_open

    if not path.exists():
        raise InputError(path, "no resume state here", "start a new run without --resume")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = json.loads((handle.metadata() or {})[STATE_KEY])
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise InputError(path, f"unreadable resume state ({type(exc).__name__}: {exc})", "start a new run") from None
    if header.get("format") != STATE_FORMAT:
        raise InputError(path, f"resume state format {header.get('format')!r} is not supported", "start a new run")
    return header["state"]
