#!/usr/bin/env bash
# How the figures in weights/cards/brats17-tiny.md and docs/training.md were measured (protocol of
# shared/spec/cagr.md). The holdout case is only scored here: every model was chosen on the validation subjects.
# Needs the store of scripts/train_brats17_models.sh ($WORK/store17).
set -euo pipefail
DATA=${DATA:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}
WORK=${WORK:-/tmp/mrsynth-brats17}
HERE=$(cd "$(dirname "$0")" && pwd)
mrsynth preprocess --dataset brats --root "$DATA/holdout" --out "$WORK/holdout_store" --split 0,0,1 --dtype float32 -q

# 1. AGI-Net against ResUnet on (t1,t2)->flair (same recipe, data and budget): mean +- std over slices, paired
#    Wilcoxon signed-rank test over slices, on the validation subjects and on the holdout (docs/training.md)
for split in val test; do
  store="$WORK/store17"; [[ $split == test ]] && store="$WORK/holdout_store"
  mrsynth eval --data "$store" --split "$split" --dataset brats \
    --checkpoint agi-net-tiny-brats17-t1t2-flair --checkpoint resunet-tiny-brats17-t1t2-flair \
    --report "$WORK/compare_flair_$split" --device cpu --json > "$WORK/compare_flair_$split.jsonl"
done

# 2. every bundled BraTS model on the holdout, and the regression baseline of each scenario (validation + holdout)
for name in $(mrsynth models --json | python -c "import json,sys; [print(m['name']) for m in map(json.loads, sys.stdin) if 'brats17' in m['name']]"); do
  mrsynth eval --data "$WORK/holdout_store" --split test --checkpoint "$name" --device cpu --json | tail -n 2
done
for scenario in "t1,t2->flair" "t2,flair->t1" "t1,flair->t2" "t1,t2,flair->t1c" "t1,t1c,t2->flair" \
                "t1,t1c,flair->t2" "t1c,t2,flair->t1"; do
  python "$HERE/regression_baseline.py" --data "$WORK/store17" --scenario "$scenario" --eval "$WORK/holdout_store:test"
done
