"""The inference checkpoint: one ``.safetensors`` file whose header carries JSON metadata.

Why one file and no pickle: a checkpoint downloaded from anywhere is loaded without running code (safetensors
parses a length-prefixed JSON header and raw tensors), and the metadata (architecture, scenario, normalisation,
training data) is readable by any tool that can read that header, without torch.

Metadata schema (``format`` = 1), stored under the header key ``mrsynth`` as JSON::

    {"format": 1, "mrsynth_version": "0.1.0",
     "model": {...ModelConfig.to_dict()...},
     "scenario": {"inputs": ["t1", "t2"], "target": "flair"},
     "normalization": {"method": "percentile", "percentile": 99.5, "over": "nonzero", "clip": [0, 1]},
     "slice_size": [240, 240],          # the in-plane size the model was trained on
     "voxel_size_mm": [1.0, 1.0, 1.0],  # typical training voxel size, for warnings
     "skull_stripped": true,
     "training": {...free-form: data, licence, framework, iterations...},
     "dtype": "float16"}                # storage dtype; weights are cast to float32 on load
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mrsynth import __version__
from mrsynth.errors import InputError

FORMAT_VERSION = 1
METADATA_KEY = "mrsynth"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".ckpt", ".bin")
CONVERT_HINT = (
    "mrsynth loads safetensors only; convert a file you trust with "
    "safetensors.torch.save_file(torch.load(f, weights_only=True), 'model.safetensors')"
)


def default_normalization() -> dict[str, Any]:
    """The paper's min-max normalisation with this project's convention (spec: cagr.md, training recipe)."""
    return {"method": "percentile", "percentile": 99.5, "over": "nonzero", "clip": [0.0, 1.0]}


def save_checkpoint(path: str | Path, model: Any, metadata: dict[str, Any], dtype: str = "float32") -> Path:
    """Write model weights and metadata atomically (temporary file in the same folder, then rename)."""
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    tensors = {
        name: (t.detach().to("cpu", torch_dtype) if t.is_floating_point() else t.detach().cpu()).contiguous()
        for name, t in model.state_dict().items()
    }
    meta = {"format": FORMAT_VERSION, "mrsynth_version": __version__, **metadata, "dtype": dtype}
    if "model" not in meta:
        meta["model"] = model.config.to_dict()
    from mrsynth.io.atomic import atomic_output

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=True) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta)})
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The checkpoint's metadata, read from the safetensors header without loading any tensor or torch."""
    path = Path(path)
    _refuse_unsafe(path)
    try:
        with open(path, "rb") as handle:
            size_bytes = handle.read(8)
            if len(size_bytes) != 8:
                raise ValueError("file too short")
            size = int.from_bytes(size_bytes, "little")
            if size <= 0 or size > 100_000_000 or size > path.stat().st_size - 8:
                raise ValueError("bad header length")
            header = json.loads(handle.read(size))
        meta = json.loads(header["__metadata__"][METADATA_KEY])
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not an mrsynth safetensors checkpoint ({type(exc).__name__}: {exc})", CONVERT_HINT) from None
    if meta.get("format") != FORMAT_VERSION:
        raise InputError(path, f"checkpoint format {meta.get('format')!r} is not supported", "upgrade mrsynth")
    return meta


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """Rebuild the generator a checkpoint describes, with its weights in float32, in eval mode."""
    from safetensors.torch import load_file

    from mrsynth.models import build_model

    meta = read_metadata(path)
    model = build_model(meta["model"])
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise InputError(path, f"corrupt safetensors checkpoint ({exc})", "download or copy it again") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(
            path, f"weights do not match the architecture in its metadata (missing {len(missing)}, unexpected {len(unexpected)})"
        )
    return model.to(device).eval(), meta


def _refuse_unsafe(path: Path) -> None:
    if not path.exists():
        raise InputError(path, "checkpoint not found", "check the path or use a registry name (mrsynth models)")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise InputError(path, "pickled checkpoints are never loaded", CONVERT_HINT)
