#!/usr/bin/env bash
# One short GPU run of everything the CUDA roll kernel needs checked (well under 5 minutes on an H100):
#   1. the GPU-marked tests (tests/test_cuda_roll.py -m gpu): kernel parity, dispatcher, streams, tiny AGI-Net;
#   2. benchmarks/gpu_check.py: parity tables, float64 gradcheck of the torch path, a paper-width AGI-Net
#      forward+backward with the kernel, and the timing tables (roll op; ResUnet vs AGI-Net training step at
#      batch 16, 256x256, with and without AMP) to paste into docs/performance.md.
# Usage: bash benchmarks/gpu_check.sh [gpu_check.py options, e.g. --steps 5 --skip-train]
# Writes gpu_check.json (and the pytest log) to $OUT if set, else to the current folder.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
RESULTS=${OUT:-.}
mkdir -p "$RESULTS"

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "error: torch sees no CUDA device; run this on a GPU machine" >&2
    exit 2
fi
if ! "$PYTHON" -c "import cupy" 2>/dev/null; then
    echo "error: cupy is not installed: pip install 'mrsynth[cuda]' (CUDA 12) or 'mrsynth[cuda13]' (CUDA 13)" >&2
    exit 2
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

echo "== GPU tests"
"$PYTHON" -m pytest -q -m gpu -p no:cacheprovider tests/test_cuda_roll.py 2>&1 | tee "$RESULTS/gpu_tests.log" | tail -n 15
tests_status=${PIPESTATUS[0]}

echo "== gpu_check.py"
"$PYTHON" benchmarks/gpu_check.py --json "$RESULTS/gpu_check.json" "$@"
check_status=$?

if [ "$tests_status" -ne 0 ] || [ "$check_status" -ne 0 ]; then
    echo "gpu_check.sh: FAILED (tests exit $tests_status, checks exit $check_status)" >&2
    exit 1
fi
echo "gpu_check.sh: all passed"
