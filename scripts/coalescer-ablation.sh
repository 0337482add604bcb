#!/usr/bin/env bash
# Short-run ablation of the coalescer net over desc_scale, the direction exponent p, the balanced
# (hub-capped) assignment and sampler-aware starts, reusing a trained autoencoder + text encoder.
# Usage: scripts/coalescer-ablation.sh BASE_COALESCER_SAFETENSORS [STEPS] [OUTROOT]
# Extra flags for every run via ABL_ARGS (the BENCHMARKS.md table used ABL_ARGS="--pca-dim 48", 1000 steps).
# Prints a markdown table (latent 10-NN probe); score each run's model with
#   coalesce eval --model coalescer --models-dir DIR --steps 2   (DIR/coalescer -> OUTROOT/NAME)
set -euo pipefail
cd "$(dirname "$0")/.."
BASE="$1"; STEPS="${2:-1000}"; ROOT="${3:-/tmp/coalescer-ablation}"
BIN="${COALESCE_BIN:-.build/release/coalesce}"
mkdir -p "$ROOT"
NAMES=()
run() {  # name, extra flags...
    local name="$1"; shift
    NAMES+=("$name")
    # shellcheck disable=SC2086
    "$BIN" train coalescer --reuse "$BASE" --out "$ROOT/$name" --steps "$STEPS" --probe-per-class 50 --seed 1 \
        ${ABL_ARGS:-} "$@" > "$ROOT/$name.log" 2>&1
}
run nearest --hub-cap 0
run desc-scale-1.5 --hub-cap 0 --desc-scale 1.5
run desc-scale-16 --hub-cap 0 --desc-scale 16
run p-1 --hub-cap 0 --p 1
run p-2 --hub-cap 0 --p 2
run balanced-cap2 --hub-cap 2
run self-start-0.5 --hub-cap 0 --self-start-fraction 0.5

echo "| run | desc_scale | p | retrieved class = requested (prior / near-data starts) | distinct items, first epoch (prior-start queries) | top-1% share | distance loss first → last | direction loss first → last | 1 step: 10-NN acc / distinct / nn-ratio | 2 steps: 10-NN acc / distinct / nn-ratio |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for d in "${NAMES[@]}"; do
    r="$ROOT/$d/training-report.txt"
    line=$(grep '^coalescer:' "$r")
    ds=$(echo "$line" | sed 's/.*desc_scale \([0-9.]*\), p \([0-9.]*\).*/\1/')
    p=$(echo "$line" | sed 's/.*desc_scale \([0-9.]*\), p \([0-9.]*\).*/\2/')
    m=$(grep 'requested class' "$r" | sed 's/.*: \([0-9.]*%\) from prior starts, \([0-9.]*%\) from near.*/\1 \/ \2/')
    dist=$(grep 'distinct items' "$r" | sed 's/.*queries): \([0-9]*\) of \([0-9]*\) (prior starts only: \([0-9]*\) from \([0-9]*\) queries).*/\1 (\3 of \4)/')
    top=$(grep -o 'top 1% of items take [0-9.]*%' "$r" | grep -o '[0-9.]*%$')
    dl=$(grep 'loss distance' "$r" | sed 's/.*distance \([0-9.]*\) -> \([0-9.]*\), direction \([0-9.]*\) -> \([0-9.]*\).*/\1 → \2/')
    dr=$(grep 'loss distance' "$r" | sed 's/.*distance \([0-9.]*\) -> \([0-9.]*\), direction \([0-9.]*\) -> \([0-9.]*\).*/\3 → \4/')
    p1=$(grep 'probe steps 1:' "$r" | sed 's/.*accuracy \([0-9.]*%\), distinct nearest items \([0-9/]*\), nn-distance ratio vs test \([0-9.]*\).*/\1 \/ \2 \/ \3/')
    p2=$(grep 'probe steps 2:' "$r" | sed 's/.*accuracy \([0-9.]*%\), distinct nearest items \([0-9/]*\), nn-distance ratio vs test \([0-9.]*\).*/\1 \/ \2 \/ \3/')
    echo "| $d | $ds | $p | $m | $dist | $top | $dl | $dr | $p1 | $p2 |"
done
