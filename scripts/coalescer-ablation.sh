#!/usr/bin/env bash
# Short-run ablation of the coalescer net over desc_scale, the direction exponent p and the
# balanced-assignment variant, reusing a trained autoencoder + text encoder.
# Usage: scripts/coalescer-ablation.sh BASE_COALESCER_SAFETENSORS [STEPS] [OUTROOT]
# Prints one markdown row per run (latent 10-NN probe at 1 and 2 steps; see BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE="$1"; STEPS="${2:-1500}"; ROOT="${3:-/tmp/coalescer-ablation}"
BIN="${COALESCE_BIN:-.build/release/coalesce}"
mkdir -p "$ROOT"
run() {  # name, extra flags...
    local name="$1"; shift
    "$BIN" train coalescer --reuse "$BASE" --out "$ROOT/$name" --steps "$STEPS" --probe-per-class 50 --seed 1 ${ABL_ARGS:-} "$@" \
        > "$ROOT/$name.log" 2>&1
    local r="$ROOT/$name/training-report.txt"
    local ds p loss match distinct p1 p2
    ds=$(grep -o 'desc_scale [0-9.]*' "$r" | head -1 | cut -d' ' -f2)
    p=$(grep -o ', p [0-9.]*' "$r" | head -1 | awk '{print $2}')
    loss=$(grep -o 'loss distance .*' "$r" | head -1 | sed 's/ (first.*//')
    match=$(grep -o 'requested class: [0-9.]*% from prior starts' "$r" | grep -o '[0-9.]*%')
    distinct=$(grep -o 'prior starts only: [0-9]* from [0-9]*' "$r" | awk '{print $4"/"$6}')
    p1=$(grep 'probe steps 1:' "$r" | sed 's/.*accuracy \([0-9.]*%\), distinct nearest items \([0-9/]*\), nn-distance ratio vs test \([0-9.]*\).*/\1 | \2 | \3/')
    p2=$(grep 'probe steps 2:' "$r" | sed 's/.*accuracy \([0-9.]*%\), distinct nearest items \([0-9/]*\), nn-distance ratio vs test \([0-9.]*\).*/\1 | \2 | \3/')
    echo "| $name | $ds | $p | $match | $distinct | $loss | $p1 | $p2 |"
}
echo "| run | desc_scale | p | retrieved class = requested (prior starts) | distinct items, first epoch (prior starts) | losses first -> last 100 steps | 1 step: 10-NN acc | distinct | nn-ratio | 2 steps: 10-NN acc | distinct | nn-ratio |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
run default
run desc-scale-1.5 --desc-scale 1.5
run desc-scale-16 --desc-scale 16
run p-1 --p 1
run p-2 --p 2
run balanced-cap2 --hub-cap 2
run self-start-0.5 --self-start-fraction 0.5

