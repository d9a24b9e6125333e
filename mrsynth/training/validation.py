"""The paper's validation protocol on a dataset of full slices, shared by the loop and the frameworks."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from mrsynth.data.target_median import to_target_median_by_subject
from mrsynth.metrics import brain_slices, slice_metrics, summarize


def item_subjects(dataset: Any) -> list[str]:
    """The subject of each item of a (possibly ``Subset``-wrapped) slice dataset; one unnamed subject for a
    dataset that does not say (tests' and notebooks' own datasets)."""
    base = getattr(dataset, "dataset", dataset)
    positions = getattr(dataset, "indices", range(len(dataset)))
    index = getattr(base, "index", None)
    return [index[i][0] for i in positions] if index is not None else [""] * len(dataset)


@torch.no_grad()
def validate(model: nn.Module, dataset: Any, device: torch.device, batch_size: int = 8, amp: bool = False,
             target_median: float | None = None) -> dict[str, Any]:
    """The paper's protocol on a dataset of full slices: per-slice PSNR/SSIM/MAE over slices with >= 1 % brain.

    ``target_median``: each subject's outputs standardised to it over its scored slices, as ``mrsynth eval`` does
    for a checkpoint that carries one. Returns means in reporting units (dB, %, x100) and the number of slices
    used.
    """
    model.eval()
    preds, truths, inputs, subjects = [], [], [], []
    names = item_subjects(dataset) if target_median is not None else [""] * len(dataset)
    # CPU validation stays float32 under --amp: it selects the checkpoint, so it must match `mrsynth eval`.
    autocast = torch.autocast("cuda", dtype=torch.float16) if amp and device.type == "cuda" else nullcontext()
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        x = torch.stack([torch.as_tensor(item[0], dtype=torch.float32) for item in items])
        y = torch.stack([torch.as_tensor(item[1], dtype=torch.float32) for item in items])
        keep = torch.from_numpy(brain_slices(x))
        if not keep.any():
            continue
        with autocast:
            out = model(x[keep].to(device))
        preds.append(out.float().clamp(0, 1).cpu()[:, 0])
        truths.append(y[keep][:, 0])
        inputs.append(x[keep])
        subjects += [name for name, kept in zip(names[start:start + len(items)], keep.tolist()) if kept]
    model.train()
    if not preds:
        return {"n_slices": 0}
    pred = torch.cat(preds).numpy()
    if target_median is not None:
        to_target_median_by_subject(pred, torch.cat(inputs).numpy(), subjects, target_median)
    values = slice_metrics(pred, torch.cat(truths).numpy())
    summary = summarize(values)
    return {"n_slices": int(sum(p.shape[0] for p in preds)), **{k: v["mean"] for k, v in summary.items()}}
