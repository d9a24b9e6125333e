"""Publish a checkpoint on the Hugging Face Hub: the safetensors file, its metadata as JSON and a model card.

Why one commit of three files: ``model.safetensors`` is what ``--model hf://OWNER/REPO`` downloads by default,
``metadata.json`` lets the Hub page and other tools read the scenario and normalisation without parsing a
safetensors header, and ``README.md`` carries the Hub's YAML header (licence, tags, model-index metrics) so the
model is findable and its licence is stated where people look. The commit sha returned is the revision to pin
in ``weights/registry.toml`` (together with the sha256 printed alongside).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mrsynth.checkpoint import read_metadata
from mrsynth.errors import InputError
from mrsynth.hub.registry import find_entry, load_registry, weights_dir
from mrsynth.hub.resolve import DEFAULT_FILENAME, resolve_model, sha256_file

TAGS = ("mri", "image-synthesis", "agi-net", "medical-imaging", "mrsynth")
METRIC_NAMES = {"psnr": "PSNR (dB)", "ssim": "SSIM (%)", "mae": "MAE (x100)"}
_TOKEN_HINT = "log in with `hf auth login`, set HF_TOKEN, or pass --token with a write token"


def push_checkpoint(checkpoint: str | Path, repo: str, *, revision: str | None = None, private: bool | None = None,
                    token: str | None = None, license: str | None = None,
                    commit_message: str | None = None) -> dict[str, Any]:
    """Upload ``checkpoint`` (a path or registry name) to ``repo`` and return what to pin: commit, sha256, size."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError as exc:
        raise InputError("--repo", f"{repo!r} is not a repository id ({exc})", "write OWNER/REPO") from None
    if "/" not in repo:
        raise InputError("--repo", f"{repo!r} has no owner", "write OWNER/REPO")
    path = resolve_model(str(checkpoint))
    meta = read_metadata(path)  # refuses anything that is not an mrsynth safetensors checkpoint
    entry = find_entry(str(checkpoint), load_registry())
    sha256, size = sha256_file(path), path.stat().st_size
    licence = _licence(license, meta, entry)
    card = model_card(meta, repo=repo, sha256=sha256, size=size, licence=licence, entry=entry)
    record = {**meta, "file": DEFAULT_FILENAME, "sha256": sha256, "size": size}
    operations = [
        CommitOperationAdd(DEFAULT_FILENAME, str(path)),
        CommitOperationAdd("metadata.json", (json.dumps(record, indent=2) + "\n").encode()),
        CommitOperationAdd("README.md", card.encode()),
    ]
    scenario = f"{','.join(meta['scenario']['inputs'])}->{meta['scenario']['target']}"
    api = HfApi(token=token)
    with _hub_errors(repo):
        api.create_repo(repo, private=private, exist_ok=True)
        if revision not in (None, "main"):
            api.create_branch(repo, branch=revision, exist_ok=True)
        info = api.create_commit(repo, operations, revision=revision,
                                 commit_message=commit_message or f"Upload mrsynth checkpoint ({scenario})")
    return {"repo": repo, "revision": revision or "main", "commit": info.oid, "url": info.commit_url,
            "model": f"hf://{repo}/{DEFAULT_FILENAME}@{info.oid}", "sha256": sha256, "size": size,
            "files": [op.path_in_repo for op in operations]}


def model_card(meta: dict[str, Any], *, repo: str, sha256: str, size: int, licence: str,
               entry: dict[str, Any] | None = None) -> str:
    """README.md for the Hub: YAML header (licence, tags, model-index metrics) and a human-readable body."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    arch = meta.get("model", {}).get("arch", "agi-net")
    metrics = dict(meta.get("metrics") or (entry or {}).get("metrics") or {})
    training = meta.get("training", {})
    dataset = str(metrics.get("dataset") or training.get("dataset") or "mri")
    split = metrics.get("split")
    results = [
        EvalResult(task_type="image-to-image", dataset_type=dataset.lower(), dataset_name=dataset,
                   dataset_split=str(split) if split else None, metric_type=key, metric_name=name,
                   metric_value=float(metrics[key]))
        for key, name in METRIC_NAMES.items() if isinstance(metrics.get(key), (int, float))
    ]
    data = ModelCardData(license=licence, library_name="mrsynth", pipeline_tag="image-to-image",
                         tags=sorted({*TAGS, arch}), eval_results=results or None,
                         model_name=repo.split("/")[-1] if results else None)  # model-index needs a name
    body = _card_body(meta, repo, sha256, size, licence, metrics, entry)
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
    return str(card)


def _card_body(meta: dict[str, Any], repo: str, sha256: str, size: int, licence: str,
               metrics: dict[str, Any], entry: dict[str, Any] | None) -> str:
    scenario = meta["scenario"]
    inputs = scenario["inputs"]
    flags = " ".join(f"--{c} {c.upper()}.nii.gz" for c in inputs)
    lines = [
        f"# {repo.split('/')[-1]}",
        "",
        f"Synthesizes **{scenario['target']}** from **{' + '.join(inputs)}** MRI with "
        f"mrsynth ({meta.get('model', {}).get('arch', 'agi-net')}).",
        "",
        "```bash",
        f"mrsynth synthesize {flags} --model hf://{repo} --out {scenario['target'].upper()}.nii.gz",
        "```",
        "",
        "## Checkpoint",
        "",
        f"- file: `{DEFAULT_FILENAME}` (safetensors; no pickle, so loading it runs no code), {size} bytes",
        f"- sha256: `{sha256}`",
        f"- licence of the weights: {licence}",
        f"- skull-stripped inputs expected: {meta.get('skull_stripped', 'unknown')}",
        f"- slice size: {meta.get('slice_size', 'unknown')}, voxel size (mm): {meta.get('voxel_size_mm', 'unknown')}",
        f"- normalisation: `{json.dumps(meta.get('normalization'))}`",
        f"- written by mrsynth {meta.get('mrsynth_version', '?')}; full metadata in `metadata.json`",
        "",
        "## Held-out results",
        "",
    ]
    if any(k in metrics for k in METRIC_NAMES):
        lines += ["| " + " | ".join(METRIC_NAMES[k] for k in METRIC_NAMES if k in metrics) + " |",
                  "|" + "---|" * sum(k in metrics for k in METRIC_NAMES),
                  "| " + " | ".join(f"{metrics[k]}" for k in METRIC_NAMES if k in metrics) + " |",
                  "", f"Split: {metrics.get('split', 'not recorded')}."]
    else:
        lines.append("Not recorded in this checkpoint (run `mrsynth eval` on held-out data).")
    lines += ["", "## Training", "", "```json", json.dumps(meta.get("training", {}), indent=2), "```"]
    extra = _registry_card(entry)
    if extra:
        lines += ["", "## Notes", "", extra]
    return "\n".join(lines) + "\n"


def _registry_card(entry: dict[str, Any] | None) -> str:
    """The hand-written card of a registry model, without its own YAML header (the generated one replaces it)."""
    if entry is None:
        return ""
    path = weights_dir() / entry["card"]
    if not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8")
    if text.startswith("---"):
        _, _, rest = text[3:].partition("\n---")
        text = rest.partition("\n")[2]
    return text.strip()


def _licence(option: str | None, meta: dict[str, Any], entry: dict[str, Any] | None) -> str:
    training = meta.get("training", {}) if isinstance(meta.get("training"), dict) else {}
    licence = option or training.get("licence") or training.get("license") or (entry or {}).get("licence")
    if not licence:
        raise InputError("--license", "the checkpoint does not record the licence of its weights",
                         "pass --license SPDX-ID; it follows the training data (cc-by-sa-3.0 for IXI)")
    return str(licence).lower()


@contextmanager
def _hub_errors(repo: str) -> Iterator[None]:
    """Turn Hub failures during an upload into one :class:`InputError` naming the repository."""
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    label = f"--repo {repo}"
    try:
        yield
    except OfflineModeIsEnabled:
        raise InputError(label, "HF_HUB_OFFLINE=1 forbids uploading", "unset HF_HUB_OFFLINE to push") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        hint = _TOKEN_HINT if status in (401, 403) else "check the repository id and try again"
        raise InputError(label, f"the Hub refused the upload (HTTP {status}: {exc.server_message or exc})",
                         hint) from None
    except httpx2.TransportError as exc:
        raise InputError(label, f"could not reach {constants.ENDPOINT} ({type(exc).__name__})",
                         "check the network, HF_ENDPOINT and proxy settings") from None
