#!/usr/bin/env bash
# GPU figures, on a machine with a CUDA GPU:  bash bench/gpu.sh [more python -m colorgan.bench options]
#
# Times the D + G step of the 256-px U-Net and the ResNet-18 U-Net in bf16-mixed with channels_last against
# the GPU's measured bf16 matmul rate, and the delivery of photos from prepared shards decoded on the GPU
# (nvJPEG) against the folder loader. Writes bench/RESULTS-gpu.md and bench/results-gpu.json.
#   COLORGAN_BENCH_DEVICE  cuda (default); cpu runs the same parts on the CPU (what the tests check)
#   COLORGAN_BENCH_OUT     folder for the two files (default: bench/)
#   STEP_BATCH             batch of the timed steps (default 64: batch 16 leaves a large GPU mostly idle)
#   PYTHON                 the interpreter (default: .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
DEVICE=${COLORGAN_BENCH_DEVICE:-cuda}
OUT=${COLORGAN_BENCH_OUT:-bench}

if [ "$DEVICE" = cuda ] && ! "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    echo "bench/gpu.sh: $PYTHON finds no CUDA GPU (torch.cuda.is_available() is False); on a CPU run: make bench" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m colorgan.bench --device "$DEVICE" --parts limit,step,data --models unet256,resnet18_unet256 \
    --variants bf16-mixed+channels_last --step-batch "${STEP_BATCH:-64}" --repeats 3 --out "$work" "$@"
mkdir -p "$OUT"
cp "$work/results.json" "$OUT/results-gpu.json"
cp "$work/RESULTS.md" "$OUT/RESULTS-gpu.md"
echo "wrote $OUT/RESULTS-gpu.md"
