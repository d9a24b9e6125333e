"""Synthesis from raw scans against the patient's real FLAIR (issue 20, acceptance 1), one JSON line per result.

For each ``native-raw`` session (T1W, T2W and FLAIR with the skull, each on its own grid): FLAIR is synthesized
from the raw T1W + T2W (``--skull-strip``, so deepbet's mask of the T1W), the real FLAIR is brought onto the T1W
grid with the dataset's own ITK transform (``*_T1W_intrastudy_to_FLAIR.txt``, inverted: it maps FLAIR points to
T1W points), and every candidate is compared with it inside the brain mask, after scaling each image by its 99.5th
percentile there (clipped to [0, 1]): Pearson r over the brain voxels and skimage-style SSIM per axial slice
(slices where the brain covers at least 1 %), averaged. The candidates: the synthesis, each input (the T2W
resampled onto the T1W grid as the synthesis sees it; N4-corrected like the model's inputs with ``--n4``), and
the per-voxel quadratic regression of ``scripts/regression_baseline.py`` fitted on the 17 BraTS training
subjects of a slice store (its train and val splits) and applied to the same masked, normalised inputs.

    python scripts/native_raw_eval.py --data ../shared/data/native-raw --store /tmp/store17b
    python scripts/native_raw_eval.py --data ... --store ... --model agi-net-tiny-brats17-t1t2-flair --n4
    python scripts/native_raw_eval.py ... --n4-reference   # also against the real FLAIR after N4 (a diagnostic)

The store: ``mrsynth preprocess --dataset brats --root ../shared/data/brats-style --root ../shared/data/brats2018
--out STORE --split 14,3,0 --seed 0``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from regression_baseline import fit, predict, stack  # noqa: E402

from mrsynth.data.normalization import normalize  # noqa: E402
from mrsynth.io import read_volume, register_rigid, resample_to, to_canonical  # noqa: E402
from mrsynth.metrics import slice_metrics  # noqa: E402

PERCENTILE = 99.5
MIN_BRAIN = 0.01  # share of an axial slice the brain must cover for its SSIM to count


def regression_coefficients(store: str, sample: float = 0.05, seed: int = 0) -> np.ndarray:
    """The quadratic (t1, t2) -> flair regression on every subject of the store's train and val splits."""
    from mrsynth.training.data import store_datasets

    _, train, val = store_datasets(store, ["t1", "t2"], "flair")
    parts = [stack(train)] + ([stack(val)] if val is not None else [])
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return fit(x, y, sample=sample, seed=seed)


def real_flair_on(session: Path, t1: sitk.Image) -> sitk.Image:
    """The session's FLAIR on the T1W grid through the inverse of the dataset's T1W -> FLAIR transform."""
    transform = sitk.ReadTransform(str(session / "study1_T1W_intrastudy_to_FLAIR.txt"))
    return resample_to(read_volume(session / "study1_FLAIR.nii.gz"), t1, transform.GetInverse())


def scaled(image: sitk.Image, brain: np.ndarray) -> np.ndarray:
    """Canonical (z, y, x) float64 values / their 99.5th percentile inside the brain, clipped; 0 outside."""
    values = sitk.GetArrayFromImage(to_canonical(image)).astype(np.float64)
    inside = values[brain & (values > 0)]
    high = float(np.percentile(inside, PERCENTILE)) if inside.size else 1.0
    return np.where(brain, np.clip(values / high, 0.0, 1.0), 0.0)


def compare(candidate: np.ndarray, truth: np.ndarray, brain: np.ndarray) -> dict[str, float]:
    """Pearson r over the brain voxels and mean slice SSIM (%) over the slices with brain; ``slice_r``, the mean
    of each such slice's own r, is blind to how brightness changes from slice to slice (a coil's through-plane
    bias field in the reference counts against ``r`` but not against it)."""
    keep = brain.mean(axis=(1, 2)) >= MIN_BRAIN
    ssim = slice_metrics(candidate[keep], truth[keep])["ssim"]
    r = float(np.corrcoef(candidate[brain], truth[brain])[0, 1])
    slice_r = [np.corrcoef(candidate[k][brain[k]], truth[k][brain[k]])[0, 1] for k in np.flatnonzero(keep)]
    return {"r": round(r, 4), "ssim": round(100 * float(ssim.mean()), 2), "slices": int(keep.sum()),
            "slice_r": round(float(np.nanmean(slice_r)), 4)}


def evaluate(session: Path, model: str | None, coef: np.ndarray, n4: bool, skull_strip: bool,
             out_dir: Path, register: bool = False, tta: bool = False, n4_reference: bool = False) -> dict[str, Any]:
    from mrsynth.inference import Synthesizer
    from mrsynth.pipeline.bias import n4 as correct
    from mrsynth.pipeline.brainmask import apply_mask
    from mrsynth.pipeline.brainmask import skull_strip as deepbet_mask

    started = time.perf_counter()
    synthesizer = Synthesizer.from_spec(model, ["t1", "t2"], "flair", device="cpu", tta=tta)
    out = out_dir / f"{session.name}-flair.nii.gz"
    inputs = {"t1": session / "study1_T1W.nii.gz", "t2": session / "study1_T2W.nii.gz"}
    result = synthesizer(inputs, out, overwrite=True, skull_strip=skull_strip, n4=n4, register=register,
                         preview=out_dir / f"{session.name}-flair.png")
    seconds = time.perf_counter() - started
    t1 = read_volume(inputs["t1"])
    mask = result.mask if result.mask is not None else deepbet_mask(t1, "cpu", str(inputs["t1"]))
    brain = sitk.GetArrayFromImage(to_canonical(mask)).astype(bool)
    t2 = read_volume(inputs["t2"])
    t2 = resample_to(t2, t1, register_rigid(t1, t2) if register else None)  # as the synthesis saw it
    if n4:  # the inputs the model saw, so the regression and the inputs themselves are scored on them too
        t1, t2 = (correct(apply_mask(image, mask), mask) for image in (t1, t2))
    flair = real_flair_on(session, t1)
    truth = scaled(flair, brain)
    x = np.stack([normalize(np.where(brain, sitk.GetArrayFromImage(to_canonical(image)), 0.0),
                            synthesizer.metadata["normalization"])[0] for image in (t1, t2)], axis=1)
    candidates = {"synthesis": scaled(result.image, brain), "t1": scaled(t1, brain), "t2": scaled(t2, brain),
                  "regression": scaled(_image(predict(coef, x), to_canonical(t1)), brain)}
    record = {"session": session.name, "model": synthesizer.checkpoint.stem, "skull_strip": skull_strip, "n4": n4,
              "register": register, "tta": tta,
              "stages": result.stages, "seconds": round(seconds, 1),
              **{name: compare(values, truth, brain) for name, values in candidates.items()}}
    if n4_reference:  # a diagnostic beside the protocol: the real FLAIR carries its own coil bias field
        reference = scaled(correct(apply_mask(flair, mask), mask), brain)
        record["n4_reference"] = {name: compare(values, reference, brain) for name, values in candidates.items()}
    return record


def _image(values: np.ndarray, like: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(values.astype(np.float32))
    image.CopyInformation(like)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the native-raw folder (one sub-folder per session)")
    parser.add_argument("--store", required=True, help="slice store of the BraTS training subjects")
    parser.add_argument("--model", help="checkpoint or registry name (default: the registry's t1,t2->flair model)")
    parser.add_argument("--n4", action="store_true")
    parser.add_argument("--register", action="store_true", help="register the T2W to the T1W (mrsynth --register)")
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--no-skull-strip", action="store_true", help="raw inputs (still scored inside the mask)")
    parser.add_argument("--n4-reference", action="store_true",
                        help="also score every candidate against the real FLAIR after N4 (key n4_reference)")
    parser.add_argument("--out-dir", default="/tmp/native-raw-eval")
    args = parser.parse_args()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    coef = regression_coefficients(args.store)
    for session in sorted(p for p in Path(args.data).iterdir() if p.is_dir()):
        print(json.dumps(evaluate(session, args.model, coef, args.n4, not args.no_skull_strip, out_dir, args.register,
                                  args.tta, args.n4_reference)), flush=True)


if __name__ == "__main__":
    main()
