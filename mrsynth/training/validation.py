"""The paper's validation protocol on a dataset of full slices, shared by the loop and the frameworks."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from mrsynth.metrics import brain_slices, slice_metrics, summarize


@torch.no_grad()
def validate(model: nn.Module, dataset: Any, device: torch.device, batch_size: int = 8, amp: bool = False) -> dict[str, Any]:
    """The paper's protocol on a dataset of full slices: per-slice PSNR/SSIM/MAE over slices with >= 1 % brain.

    Returns means in reporting units (dB, %, x100) and the number of slices used.
    """
    model.eval()
    preds, truths, inputs = [], [], []
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
    model.train()
    if not preds:
        return {"n_slices": 0}
    values = slice_metrics(torch.cat(preds), torch.cat(truths))
    summary = summarize(values)
    return {"n_slices": int(sum(p.shape[0] for p in preds)), **{k: v["mean"] for k, v in summary.items()}}
