#!/usr/bin/env bash
# The exact recipe of the two bundled starter models (weights/agi-net-tiny-brats-t1t2-flair, weights/agi-net-light-avg152-t1t2-pd).
# CPU only, one thread per run, both runs in parallel: about 40 min (FLAIR) and 2 h (PD) on a shared 2-core machine.
# Stores and runs go to $WORK (default /tmp/mrsynth-starter); nothing here touches data/holdout.
set -euo pipefail
DATA=${DATA:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}
WORK=${WORK:-/tmp/mrsynth-starter}
mkdir -p "$WORK"

# 1. slice stores (every subject in "train"; validation is a held-out block of axial slices, see below)
mrsynth preprocess --dataset brats --root "$DATA/brats-style" --out "$WORK/brats_store" --scenario "t1,t2->flair" --split 2,0,0 -q
printf "subject,t1,t2,pd\navg152,%s,%s,%s\n" "$DATA/spm12_avg152/avg152T1.nii.gz" "$DATA/spm12_avg152/avg152T2.nii.gz" \
  "$DATA/spm12_avg152/avg152PD.nii.gz" > "$WORK/avg152.csv"
mrsynth preprocess --dataset folder --csv "$WORK/avg152.csv" --out "$WORK/pd_store" --split 1,0,0 -q

# 2. (T1, T2) -> FLAIR: both TCGA-LGG cases, axial 0-54 and 85-154 for training, 62-77 for validation
#    (a 7-slice gap on each side keeps neighbouring, nearly identical slices out of the validation block).
#    --gamma-aug 0.3: chosen on a cross-subject fold (train on TCGA-DU-7294, validate on TCGA-FG-6692), where it
#    scored 23.2 against 19.0 dB at iteration 600 (docs/training.md). The checkpoint with the best validation PSNR
#    (iteration 1050) is bundled. The first version of this model (no gamma augmentation, best at iteration 750)
#    is in git history.
mrsynth train --data "$WORK/brats_store" --scenario "t1,t2->flair" \
  --arch agi-net --preset tiny --groups 8 --framework l1 \
  --iters 1200 --batch-size 8 --crop 128 --lr 5e-4 --lr-schedule cosine --seed 0 --gamma-aug 0.3 \
  --slice-range 0:55,85:155 --val-split train --val-slice-range 62:78 \
  --val-every 150 --save-every 150 --log-every 10 --threads 1 --device cpu \
  --data-note "TCGA-LGG TCGA-DU-7294 + TCGA-FG-6692 (shared/data/brats-style), axial 0-54 and 85-154; 62-77 validation" \
  --licence "CC-BY-3.0" --run-dir "$WORK/runs/flair-tiny-c128-gamma" --json > "$WORK/flair.log" &

# 3. (T1, T2) -> PD on the avg152 templates: every slice z < 45 for training (light preset, zoom augmentation
#    0.3-1.2, 64-px crops, batch 9, 6000 iterations, no validation block: the last iteration is bundled); z >= 45 is
#    never seen. The recipe was chosen on a validation protocol inside z < 45 (train z < 30, validate z 30-44, zoomed
#    out with scripts/zoomed_validation.py; docs/training.md): 35.87 dB averaged over five zooms against 35.40 for
#    the tiny preset (version 5), 32.85 without the zoom augmentation (version 4) and 31.70 for the per-voxel
#    regression. Earlier versions of this model (tiny preset) are in git history (see the model card).
mrsynth train --data "$WORK/pd_store" --scenario "t1,t2->pd" \
  --arch agi-net --preset light --groups 8 --framework l1 \
  --iters 6000 --batch-size 9 --crop 64 --lr 5e-4 --lr-schedule cosine --seed 0 --scale-aug 0.3,1.2 \
  --slice-range 0:45 --val-split val \
  --save-every 500 --log-every 50 --threads 1 --device cpu --not-skull-stripped \
  --data-note "SPM12 avg152 T1/T2/PD templates (ICBM 152-subject average, MNI, 2 mm), axial z 0-44" \
  --licence "GPL-2.0-or-later" --run-dir "$WORK/runs/pd-light-c64-zoom-6k" --json > "$WORK/pd.log" &
wait

# 4. the bundled checkpoints in float16 (FLAIR: best validation PSNR; PD: last iteration), without the local store path
python - "$WORK" <<'PY'
import sys
from mrsynth.checkpoint import load_checkpoint, save_checkpoint
work = sys.argv[1]
for ckpt, name in (("flair-tiny-c128-gamma/best", "agi-net-tiny-brats-t1t2-flair"), ("pd-light-c64-zoom-6k/last", "agi-net-light-avg152-t1t2-pd")):
    model, meta = load_checkpoint(f"{work}/runs/{ckpt}.safetensors")
    meta["training"].pop("store", None)
    save_checkpoint(f"weights/{name}.safetensors", model, meta, dtype="float16")
PY
