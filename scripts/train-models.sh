#!/usr/bin/env bash
# Retrains the committed coalescer weights (models/coalescer/) from scratch with recorded seeds:
# image VAE, text encoder, whitened PCA, coalescer net. About 25-45 minutes on a 2-core machine.
# Usage: scripts/train-models.sh [OUT_DIR]   (default models/coalescer; extra flags via COALESCER_ARGS)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-models/coalescer}"
SEED="${COALESCER_SEED:-1}"
swift build -c release --product coalesce
swift build -c release --product CoalescerBackend
mkdir -p "$OUT"
start=$(date +%s)
# shellcheck disable=SC2086
.build/release/coalesce train coalescer --out "$OUT" --seed "$SEED" ${COALESCER_ARGS:-} 2>&1 | tee "${LOG:-/tmp/coalescer-train.log}"
echo "coalescer retrained in $(( $(date +%s) - start ))s -> $OUT"
