#!/usr/bin/env bash
# How the held-out figures in the bundled model cards were measured (protocol of shared/spec/cagr.md).
# The holdout case is used here for evaluation only: the checkpoints were chosen on validation slices beforehand.
set -euo pipefail
DATA=${DATA:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}
WORK=${WORK:-/tmp/mrsynth-starter}
mkdir -p "$WORK"

# (T1, T2) -> FLAIR on holdout/BraTS-GLI-00001-000, all 129 slices with >= 1 % brain
mrsynth preprocess --dataset brats --root "$DATA/holdout" --out "$WORK/holdout_store" --scenario "t1,t2->flair" --split 0,0,1 -q
mrsynth eval --data "$WORK/holdout_store" --split test --checkpoint agi-net-tiny-brats-t1t2-flair --device cpu --json
# the same through synthesize (NIfTI in, NIfTI out) and the NIfTI pair mode of eval
H="$DATA/holdout/BraTS-GLI-00001-000/BraTS-GLI-00001-000"
mrsynth synthesize --t1 "$H-t1n.nii.gz" --t2 "$H-t2w.nii.gz" --model agi-net-tiny-brats-t1t2-flair \
  --out "$WORK/holdout_flair.nii.gz" --device cpu --overwrite -q
mrsynth eval --pred "$WORK/holdout_flair.nii.gz" --truth "$H-t2f.nii.gz" --normalize truth \
  --input "$H-t1n.nii.gz" --input "$H-t2w.nii.gz" --json

# (T1, T2) -> PD on spm12_avg152: the test slices z >= 45 (the model was trained on z < 45 only)
A="$DATA/spm12_avg152"
mrsynth synthesize --t1 "$A/avg152T1.nii.gz" --t2 "$A/avg152T2.nii.gz" --model agi-net-light-avg152-t1t2-pd \
  --out "$WORK/avg152_pd.nii.gz" --device cpu --overwrite -q
mrsynth eval --pred "$WORK/avg152_pd.nii.gz" --truth "$A/avg152PD.nii.gz" --normalize truth --slices 45: \
  --input "$A/avg152T1.nii.gz" --input "$A/avg152T2.nii.gz" --json
# the same with left-right mirror averaging (the card's --tta row)
mrsynth synthesize --t1 "$A/avg152T1.nii.gz" --t2 "$A/avg152T2.nii.gz" --model agi-net-light-avg152-t1t2-pd --tta \
  --out "$WORK/avg152_pd_tta.nii.gz" --device cpu --overwrite -q
mrsynth eval --pred "$WORK/avg152_pd_tta.nii.gz" --truth "$A/avg152PD.nii.gz" --normalize truth --slices 45: \
  --input "$A/avg152T1.nii.gz" --input "$A/avg152T2.nii.gz" --json
