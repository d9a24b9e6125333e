"""Validation slices zoomed out or rotated: how a model and the per-voxel regression cope with small cross-sections
and with heads turned in-plane.

Why: a model trained on a slab of mid-head slices is scored, at test time, on slices up to the vertex, where the
head shrinks to a small disc in a wide field of view. That regime can be reproduced without touching the test
slices: zoom held-out slices of the training subject out about their centre (bilinear, border fill, inputs and
target alike) and score the model and the quadratic regression (fitted on the training slices) at each zoom.
Raw heads also lie turned in the scanner's plane, unlike atlas-aligned training volumes: ``--angles`` rotates the
same slices in the zoom's single resampling (every angle at every zoom), so rotation robustness is measured on
validation slices as well.
Metrics are those of ``mrsynth.metrics`` over the scan's own slice, without the store's zero padding.

    python scripts/zoomed_validation.py --data pd_store --scenario 't1,t2->pd' --fit-slices 0:30 \
        --val-slices 30:45 --checkpoint run_A/last.safetensors --checkpoint run_B/last.safetensors
    python scripts/zoomed_validation.py ... --scales 1 --angles 0,10,20,30
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from regression_baseline import features  # noqa: E402  (the quadratic terms of the data README's baseline)

DEFAULT_SCALES = "1,0.8,0.6,0.45,0.3"
DEFAULT_ANGLES = "0"


def unpadded(store, subject: str) -> tuple[np.ndarray, list[int]]:
    """The subject's (N, C, Y, X) slices without the store's in-plane padding, and their axial indices."""
    entry = store.manifest["subjects"][subject]
    oy, ox = entry["inplane_offset"]
    height, width = entry["shape"][1:]
    slices = np.array(store.slices(subject), dtype=np.float32)
    rows = slice(max(-oy, 0), min(height - oy, slices.shape[2]))
    cols = slice(max(-ox, 0), min(width - ox, slices.shape[3]))
    return slices[:, :, rows, cols], store.slice_indices(subject)


def zoom_out(stack: np.ndarray, factor: float, degrees: float = 0.0) -> np.ndarray:
    """(N, C, Y, X) scaled by ``factor`` and rotated by ``degrees`` (counter-clockwise as displayed) about the slice
    centre in the training augmentation's geometry; outside the scan the border value continues (the scan's own
    background, unlike the augmentation's estimated level)."""
    import torch

    from mrsynth.training.augment import resample, zoom_rotate_matrix

    theta = zoom_rotate_matrix(factor, degrees, *stack.shape[-2:])
    return resample(torch.from_numpy(stack), theta, "border").numpy()


def numbers(text: str) -> list[float]:
    """``1,0.5`` -> [1.0, 0.5] (argparse turns the error into one usage line naming the option)."""
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def predict(model, x: np.ndarray, window_size: tuple[int, int], tta: bool = False) -> np.ndarray:
    """The model on (N, C, Y, X) slices placed in its training window, as ``mrsynth synthesize`` places them
    (``tta``: with its left-right mirror averaging, ``mrsynth synthesize --tta``)."""
    import torch

    from mrsynth.pipeline.model import mirrored_mean
    from mrsynth.pipeline.slices import SliceWindow

    def forward(batch: torch.Tensor) -> np.ndarray:
        return model(batch)[:, 0].clamp(0.0, 1.0).numpy()

    window = SliceWindow.fit(x, window_size)
    with torch.inference_mode():
        batch = torch.from_numpy(window.cut(x))
        out = mirrored_mean(forward, batch) if tta else forward(batch)
    result = np.zeros((x.shape[0], *x.shape[2:]), dtype=np.float32)
    window.paste(out, result, np.arange(len(x)))
    return result


def main() -> None:
    import torch

    from mrsynth.checkpoint import load_checkpoint
    from mrsynth.data.store import SliceStore
    from mrsynth.hub.registry import parse_scenario
    from mrsynth.metrics import slice_metrics, summarize
    from mrsynth.training.data import parse_ranges, slice_filter

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="slice store with one subject")
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--fit-slices", required=True, help="axial indices the regression is fitted on (A:B)")
    parser.add_argument("--val-slices", required=True, help="axial indices that are zoomed and scored (A:B)")
    parser.add_argument("--checkpoint", action="append", default=[], help="a model to score (repeatable)")
    parser.add_argument("--scales", type=numbers, default=DEFAULT_SCALES, help="zoom factors, comma-separated")
    parser.add_argument("--angles", type=numbers, default=DEFAULT_ANGLES,
                        help="in-plane rotations in degrees, comma-separated (positive: counter-clockwise as displayed)")
    parser.add_argument("--tta", action="store_true", help="also score each model with left-right mirror averaging")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    store = SliceStore(args.data)
    subjects = store.subjects()
    if len(subjects) != 1:
        parser.error(f"{args.data} holds {len(subjects)} subjects; this check takes a one-subject store")
    inputs, target = parse_scenario(args.scenario)
    slices, axial = unpadded(store, subjects[0])
    channels = [store.channel(c) for c in (*inputs, target)]
    slices = slices[:, channels]
    fit, val = (np.array([keep(subjects[0], z) for z in axial])
                for keep in (slice_filter(parse_ranges(args.fit_slices, "--fit-slices")),
                             slice_filter(parse_ranges(args.val_slices, "--val-slices"))))
    if not fit.any() or not val.any() or (fit & val).any():
        parser.error("--fit-slices and --val-slices must each select slices of the store, and not the same ones")
    x_fit, y_fit = slices[fit, :-1], slices[fit, -1]
    coef, *_ = np.linalg.lstsq(features(x_fit), y_fit.ravel().astype(np.float64), rcond=None)
    models = {Path(c).parent.name + "/" + Path(c).name: load_checkpoint(c)[0].eval() for c in args.checkpoint}
    variants = [(name, model, False) for name, model in models.items()]
    if args.tta:
        variants += [(f"{name} --tta", model, True) for name, model in models.items()]

    rows = []
    for scale, angle in ((scale, angle) for scale in args.scales for angle in args.angles):
        zoomed = zoom_out(slices[val], scale, angle)
        x, y = zoomed[:, :-1], zoomed[:, -1]
        predictions = {"regression": np.clip((features(x) @ coef).reshape(y.shape), 0.0, 1.0)}
        predictions.update({name: predict(model, x, store.slice_size, tta) for name, model, tta in variants})
        for name, prediction in predictions.items():
            summary = summarize(slice_metrics(prediction, y))
            rows.append({"scale": scale, "angle": angle, "model": name, "n_slices": int(len(y)),
                         **{m: summary[m]["mean"] for m in ("psnr", "ssim", "mae")}})
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    for row in rows:
        print(f"zoom {row['scale']:.2f}  rotation {row['angle']:5.1f}  {row['model']:<40} PSNR {row['psnr']:6.2f} dB  "
              f"SSIM {row['ssim']:6.2f} %  MAE {row['mae']:5.2f}")
    for name in ["regression", *(name for name, _, _ in variants)]:
        mean = np.mean([r["psnr"] for r in rows if r["model"] == name])
        print(f"mean PSNR over the zooms and angles  {name:<40} {mean:6.2f} dB")


if __name__ == "__main__":
    main()
