#!/usr/bin/env bash
# Retrains the committed default models from scratch with recorded seeds (models/README.md):
#   1. the shared image autoencoder (models/autoencoder): encoder + decoder, then the decoder alone
#      against a patch discriminator;
#   2. the coalescer (models/coalescer) on it: text encoder, whitened PCA, the residual net by
#      regression on searched targets, then adversarial fine-tuning of the same net.
# About 45-60 minutes on a 2-core machine.
# Usage: scripts/train-models.sh [MODELS_DIR]   (default models; stage flags in models/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
M="${1:-models}"
swift build -c release --product coalesce
swift build -c release --product CoalescerBackend
C=.build/release/coalesce
LOG="${LOG:-/tmp/train-models.log}"
start=$(date +%s)
{
$C train autoencoder --epochs 7 --seed 11 --out "$M/autoencoder"
$C train autoencoder --init-from "$M/autoencoder" --decoder-only --adversarial-weight 0.1 --adversarial-start 0 \
    --lr 5e-4 --epochs 1 --max-steps 600 --seed 12 --out "$M/autoencoder"
COALESCER_FLAGS=(--autoencoder "$M/autoencoder" --pca-dim 128 --hidden 512 --blocks 3 --level-input --renoise 0.5 --seed 1)
$C train coalescer "${COALESCER_FLAGS[@]}" --steps 3000 --out "$M/coalescer-regression"
$C train coalescer "${COALESCER_FLAGS[@]}" --init-net "$M/coalescer-regression/coalescer.safetensors" --steps 0 \
    --adversarial-steps 1500 --second-step-level 0.5 --out "$M/coalescer"
rm -rf "$M/coalescer-regression"
} 2>&1 | tee "$LOG"
echo "default models retrained in $(( $(date +%s) - start ))s -> $M/autoencoder, $M/coalescer"
