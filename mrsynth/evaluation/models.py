"""Checkpoints under evaluation: resolving ``--checkpoint`` specs, labels, and batched slice prediction."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mrsynth.data.background import outside_inputs_to_zero
from mrsynth.data.target_median import target_median, to_target_median
from mrsynth.errors import InputError


@dataclass
class EvalModel:
    """One loaded generator with what evaluation needs to know about it."""

    label: str  # the row name in tables and the ``model`` column of metrics.csv
    source: str  # the spec the user gave (path, registry name or hf:// URL)
    path: Path
    model: Any  # torch.nn.Module in eval mode
    inputs: tuple[str, ...]
    target: str
    metadata: dict[str, Any]

    @property
    def scenario(self) -> str:
        """The scenario in the CLI's notation, e.g. ``t1,t2->flair``."""
        return f"{','.join(self.inputs)}->{self.target}"


def resolve_path(spec: str) -> Path:
    """A local, verified checkpoint file: a path, a registry name or ``hf://`` URL (via :mod:`mrsynth.hub`)."""
    from mrsynth.hub import resolve_model

    return Path(resolve_model(spec))


def unique_labels(specs: Sequence[str], paths: Sequence[Path]) -> list[str]:
    """Short row names: the registry name or file stem, the parent folder added where two would collide."""
    labels = [path.stem if Path(spec).expanduser().exists() or spec.startswith("hf://") else spec
              for spec, path in zip(specs, paths)]
    for i, label in enumerate(labels):
        if labels.count(label) > 1:
            labels[i] = f"{paths[i].parent.name}/{paths[i].stem}"
    for i, label in enumerate(labels):
        if labels.count(label) > 1:
            labels[i] = f"{label}#{i + 1}"
    return labels


def registered_models_for(store: str | Path) -> list[str]:
    """The registry's models whose inputs and target a slice store holds, in registry order: what ``mrsynth eval
    --data STORE`` scores without ``--checkpoint`` ("how good are the bundled models on my data")."""
    from mrsynth.data.store import read_manifest
    from mrsynth.hub import load_registry

    contrasts = set(read_manifest(store)["contrasts"])
    names = [e["name"] for e in load_registry() if set(e["inputs"]) | {e["target"]} <= contrasts]
    if not names:
        raise InputError(store, f"no registered model fits this store's contrasts ({', '.join(sorted(contrasts))})",
                         "pass --checkpoint, or see mrsynth models")
    return names


def load_models(specs: Sequence[str], device: str = "cpu") -> list[EvalModel]:
    """Load every ``--checkpoint`` once, on ``device``, in the order given (the table's row order)."""
    from mrsynth.checkpoint import load_checkpoint

    paths = [resolve_path(spec) for spec in specs]
    loaded = []
    for spec, path, label in zip(specs, paths, unique_labels(specs, paths)):
        model, meta = load_checkpoint(path, device)
        scenario = meta.get("scenario") or {}
        if not scenario.get("inputs") or not scenario.get("target"):
            raise InputError(path, "checkpoint metadata has no scenario", "re-save it with mrsynth train")
        if meta.get("imputation"):
            loaded.extend(_one_missing_models(label, spec, path, model, meta, device))
        else:
            loaded.append(EvalModel(label, spec, path, model, tuple(scenario["inputs"]), scenario["target"], meta))
    return loaded


def _one_missing_models(label: str, spec: str, path: Path, model: Any, meta: dict[str, Any],
                        device: str) -> list[EvalModel]:
    """An imputation (mmgan) checkpoint as one model per one-missing scenario of its contrast set, labelled
    ``LABEL:TARGET``, so that each scenario is scored and paired with the other models of that scenario."""
    from mrsynth.imputation import ImputationSpec, Imputer

    imputation = ImputationSpec.from_dict(meta["imputation"])
    models = []
    for target in imputation.contrasts:
        present = imputation.scenario(target)
        wrapped = Imputer(model, imputation, present, target).to(device).eval()
        models.append(EvalModel(f"{label}:{target}", spec, path, wrapped, tuple(present), target, meta))
    return models


def predict_slices(model: Any, inputs: np.ndarray, batch_size: int = 16, device: str = "cpu") -> np.ndarray:
    """Synthesise an (N, C_in, H, W) stack of normalised input slices -> (N, H, W) float32 in [0, 1].

    The output is clipped to [0, 1] and zeroed where every input is 0 — what ``synthesize`` writes
    (:func:`mrsynth.data.background.outside_inputs_to_zero`) — so a model cannot gain or lose PSNR through values no
    saved image would contain.
    """
    import torch


    out = np.empty((inputs.shape[0],) + tuple(inputs.shape[2:]), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, inputs.shape[0], batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(inputs[start : start + batch_size], dtype=np.float32))
            pred = model(batch.to(device))[:, 0].clamp_(0.0, 1.0)
            out[start : start + batch_size] = pred.float().cpu().numpy()
    return outside_inputs_to_zero(out, inputs)


def predict_subject(model: EvalModel, inputs: np.ndarray, batch_size: int = 16, device: str = "cpu") -> np.ndarray:
    """:func:`predict_slices` over one subject's scored slices, then, for a checkpoint with a ``target_median``,
    the volume's standardisation (:mod:`mrsynth.data.target_median`) over those slices, as ``synthesize`` does
    over the whole volume."""
    pred = predict_slices(model.model, inputs, batch_size, device)
    median = target_median(model.metadata)
    return pred if median is None else to_target_median(pred, inputs, median)
