"""Make a multi-planar training store from a slab of one subject of an axial slice store.

Why: the PD starter model learns from the lower half of a single volume (the avg152 templates) and is scored on
the upper half, whose anatomy its axial slices never show. Coronal and sagittal slices through the same training
slab show the same voxels in other arrangements (cortex and sulci at every angle, small cross-sections), so the
network sees more varied local structure without a single voxel from outside the slab. The slices are cut from
the stored (already normalised) volume, so every plane keeps the whole volume's normalisation constants, exactly
as inference applies them.

    python scripts/multiplanar_store.py --data pd_store --subject avg152 --train-slab 0:45 --out pd_mp_store
    python scripts/multiplanar_store.py --data pd_store --subject avg152 --train-slab 15:45 --val-slab 0:15 --out fold

Writes subjects ``<subject>_axial``, ``_coronal`` and ``_sagittal`` (split train) from the training slab and,
with ``--val-slab``, ``<subject>_val`` (axial slices of that slab, split val). Coronal images are (axial, x),
sagittal ones (y, axial), each centred in the store's slice size; the training loader drops near-empty slices.
"""

from __future__ import annotations

import argparse
import copy

import numpy as np


def slab_range(text: str) -> tuple[int, int]:
    start, stop = (int(part) for part in text.split(":"))
    return start, stop


def centred(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Zero-pad a (C, h, w) image to (C, H, W), centred (the caller has checked that it fits)."""
    channels, height, width = image.shape
    out = np.zeros((channels, *size), dtype=image.dtype)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    out[:, top : top + height, left : left + width] = image
    return out


def planes(volume: np.ndarray, axial: list[int], size: tuple[int, int]) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Axial, coronal and sagittal slices of a (z, C, y, x) slab, each padded to ``size``, with their indices."""
    _, _, height, width = volume.shape
    coronal = [centred(volume[:, :, y, :].transpose(1, 0, 2), size) for y in range(height)]
    sagittal = [centred(volume[:, :, :, x].transpose(1, 2, 0), size) for x in range(width)]
    return {
        "axial": (np.ascontiguousarray(volume), axial),
        "coronal": (np.stack(coronal), list(range(height))),
        "sagittal": (np.stack(sagittal), list(range(width))),
    }


def main() -> None:
    from mrsynth.data.store import SliceStore, write_manifest, write_subject

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="axial slice store made by mrsynth preprocess")
    parser.add_argument("--subject", required=True)
    parser.add_argument("--train-slab", required=True, help="START:STOP of original axial indices")
    parser.add_argument("--val-slab", help="START:STOP of original axial indices, kept axial")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    store = SliceStore(args.data)
    indices = np.asarray(store.slice_indices(args.subject))
    slices = np.asarray(store.slices(args.subject))
    if not np.array_equal(np.diff(indices), np.ones(len(indices) - 1, dtype=indices.dtype)):
        parser.error(f"{args.subject} in {args.data} has gaps between its axial slices; cannot reslice")
    start, stop = slab_range(args.train_slab)
    in_slab = (indices >= start) & (indices < stop)
    slab = slices[in_slab]
    if len(slab) == 0:
        parser.error(f"no slice of {args.subject} in {args.data} lies in --train-slab {args.train_slab}")
    if len(slab) > min(store.slice_size):  # coronal planes are (slab, W), sagittal ones (H, slab): never crop them
        parser.error(f"a {len(slab)}-slice slab does not fit the store's {store.slice_size[0]}x{store.slice_size[1]} "
                     "slices as a coronal or sagittal plane")

    manifest = copy.deepcopy(store.manifest)
    source = manifest["subjects"][args.subject]
    manifest["subjects"], manifest["split"] = {}, {}
    manifest["command"] = "python scripts/multiplanar_store.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None
    )
    manifest["multiplanar"] = {"source": str(store.path), "subject": args.subject, "train_slab": [start, stop],
                               "val_slab": args.val_slab}

    def add(name: str, array: np.ndarray, index: list[int], split: str, plane: str) -> None:
        write_subject(args.out, name, array)
        entry = {**source, "n_slices": len(index), "slice_indices": index, "plane": plane}
        manifest["subjects"][name], manifest["split"][name] = entry, split

    for plane, (array, index) in planes(slab, indices[in_slab].tolist(), store.slice_size).items():
        add(f"{args.subject}_{plane}", array, index, "train", plane)
    if args.val_slab:
        v_start, v_stop = slab_range(args.val_slab)
        keep = (indices >= v_start) & (indices < v_stop)
        add(f"{args.subject}_val", slices[keep], indices[keep].tolist(), "val", "axial")
    write_manifest(args.out, manifest)
    counts = {name: entry["n_slices"] for name, entry in manifest["subjects"].items()}
    print(counts)


if __name__ == "__main__":
    main()
