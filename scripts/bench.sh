#!/usr/bin/env bash
# `make bench`: measures every (model, steps) row of ROWS and stores one result per row, then rebuilds
# the table, the plots and the pictures from all stored rows (scripts/bench-report.py render):
#
#   bench/results/<model>-<steps>.json   the row's raw results (eval report, speed, parameters,
#                                        training time, machine, date, load, weights checksum)
#   bench/results/<model>-<steps>.png    its sample grid: the first 8 scored images of each class
#                                        (rows: the 10 class prompts; same prompts and seeds in
#                                        every row of the same COUNT, as `coalesce eval` seeds them)
#   BENCHMARKS.md (between the bench-table markers), README.md (between the bench-readme markers),
#   docs/images/bench-fid-vs-nfe.png, bench-fid-vs-latency.png, bench-classes.png
#
# Per row:
#   coalesce eval --model M --steps S --count $COUNT --batch 64 --json --save-images DIR
#       FID, class accuracy, precision/recall, near-copies (and real training images scored the
#       same way at the same count: the reference of that count)
#   coalesce bench generate --model M --steps S --batch 64 --seconds $BENCH_SECONDS --json
#       images/s at batch 64; only where one batch of 64 takes at most $BENCH_SECONDS by the eval's
#       own pace, else images/s is the eval's generation (COUNT/10 images per call; recorded)
#   coalesce bench generate --model M --steps S --batch 1 --seconds $BENCH_SECONDS --min-calls 3 --json
#       latency per image at batch 1 (p50 of the calls)
#
# Only the rows in ROWS are measured; `ROWS="coalescer:1 coalescer:2" make bench` re-measures those
# two and rebuilds everything from the stored rows. RENDER=0 skips the rebuild, ROWS="" only rebuilds.
#
# Time budget of the default run (COUNT=500, BENCH_SECONDS=3): at most 30 minutes on the 2 cores.
# Measured 2026-12-01 (all 25 rows, 1327 s = 22 min, at `nice -n 15` beside other jobs, load average
# 3.6-4.7; an idle machine is faster):
#   nested-unet      4, 8, 16, 50 steps and pixel-unet 16: 388 s in all (measured alone 2026-12-07, after the
#                    nested model's guidance interval; 766 s for the four nested rows before, under load)
#   latent-diffusion 1, 2, 4, 8, 16, 50      19 + 22 + 29 + 42 + 54 + 142 = 308 s   (50 steps: 4 images/s)
#   distilled-unet   1, 2, 4, 8, 16          18 + 20 + 26 + 31 + 39 = 134 s
#   coalescer-v1, coalescer-v2 (1, 2, 4), real-train, reconstruction, noise, test-pattern: 9-14 s each = 123 s
#   coalescer and coalescer-v3 (1, 2, 4 each): about 31 s each (measured alone, 2026-12-01, as coalescer-v3)
# Each row: the eval (generation, then scoring it and the real-image reference, about 6 s) and the
# two speed runs (a warm-up call, then at least BENCH_SECONDS of calls each). COUNT scales the
# generation part (about 1150 s of the 1327); with COUNT=1000 the run would take about 40 minutes.
# One count for every row, so FIDs compare across rows; FID is biased upwards at small n (real training
# images score 19 at n = 1000, 32 at n = 500), so every row stores the real-image reference of its own
# count, and the table and plots show it.
#
# Environment: COALESCE (binary, default .build/release/coalesce), COUNT (images per eval, 500),
# BENCH_SECONDS (seconds of timed calls per speed measurement, 3), ROWS (model:steps list), RESULTS
# (directory of the stored rows, bench/results), SPEED (0: quality only, no speed runs; the
# headline comparison uses it, its speed is in the sweep), PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."

COALESCE=${COALESCE:-.build/release/coalesce}
COUNT=${COUNT:-500}
BENCH_SECONDS=${BENCH_SECONDS:-3}
PYTHON=${PYTHON:-python3}
RESULTS=${RESULTS:-bench/results}
RENDER=${RENDER:-1}
SPEED=${SPEED:-1}
DEFAULT_ROWS="real-train:1 reconstruction:1 noise:1 test-pattern:1
coalescer:1 coalescer:2 coalescer:4
coalescer-v1:1 coalescer-v1:2 coalescer-v1:4 coalescer-v2:1 coalescer-v2:2 coalescer-v2:4 coalescer-v3:1 coalescer-v3:2 coalescer-v3:4
distilled-unet:1 distilled-unet:2 distilled-unet:4 distilled-unet:8 distilled-unet:16
distilled-unet-2step:1 distilled-unet-2step:2 distilled-unet-2step:4 distilled-unet-minilm:4
latent-diffusion:1 latent-diffusion:2 latent-diffusion:4 latent-diffusion:8 latent-diffusion:16 latent-diffusion:50 latent-diffusion-minilm:50
nested-unet:4 nested-unet:8 nested-unet:16 nested-unet:50 pixel-unet:16"
ROWS=${ROWS-$DEFAULT_ROWS}

[ -x "$COALESCE" ] || { echo "bench: $COALESCE not built (run: swift build -c release)" >&2; exit 1; }
mkdir -p "$RESULTS"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$COALESCE" info --json > "$tmp/info.json"
known=$("$COALESCE" eval --list)
started=$(date +%s)

for row in $ROWS; do
    model=${row%%:*}; steps=${row##*:}
    if ! grep -qx "$model" <<<"$known"; then
        echo "bench: skipping $model (not registered)" >&2
        continue
    fi
    echo "bench: $model, $steps steps ($(( $(date +%s) - started )) s so far)" >&2
    rm -rf "$tmp/images" "$tmp"/*.json.row
    row_start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    load_start=$(cut -d' ' -f1 /proc/loadavg)
    eval_args="eval --model $model --steps $steps --count $COUNT --batch 64 --json"
    if ! "$COALESCE" $eval_args --save-images "$tmp/images" > "$tmp/eval.json"; then
        echo "bench: skipping $model, $steps steps (eval failed; see above)" >&2
        continue
    fi
    # A batch of 64 at the eval's pace; the b64 speed run costs a warm-up call plus BENCH_SECONDS.
    b64_args="bench generate --model $model --steps $steps --batch 64 --seconds $BENCH_SECONDS --min-calls 2 --json"
    b1_args="bench generate --model $model --steps $steps --batch 1 --seconds $BENCH_SECONDS --min-calls 3 --json"
    if [ "$SPEED" = 0 ]; then
        b64_args=""; b1_args=""
        echo "{}" > "$tmp/b64.json"; echo "{}" > "$tmp/b1.json"
    elif "$PYTHON" -c 'import json, sys; e = json.load(open(sys.argv[1])); ips = e["images_per_second"]
sys.exit(0 if ips > 0 and 64 / ips <= float(sys.argv[2]) else 1)' "$tmp/eval.json" "$BENCH_SECONDS"; then
        "$COALESCE" $b64_args > "$tmp/b64.json" || { echo "bench: $model, $steps steps: batch-64 run failed" >&2; continue; }
    else
        b64_args=""
        echo "{}" > "$tmp/b64.json"
    fi
    if [ -n "$b1_args" ]; then
        "$COALESCE" $b1_args > "$tmp/b1.json" || { echo "bench: $model, $steps steps: batch-1 run failed" >&2; continue; }
    fi
    "$PYTHON" scripts/bench-report.py row --model "$model" --steps "$steps" --results "$RESULTS" \
        --eval "$tmp/eval.json" --b64 "$tmp/b64.json" --b1 "$tmp/b1.json" --info "$tmp/info.json" \
        --images "$tmp/images" --started "$row_start" --load-start "$load_start" \
        --eval-command "coalesce $eval_args" --b64-command "${b64_args:+coalesce $b64_args}" \
        --b1-command "${b1_args:+coalesce $b1_args}" --bench-seconds "$BENCH_SECONDS"
done
echo "bench: measured in $(( $(date +%s) - started )) s" >&2

if [ "$RENDER" != 0 ]; then
    "$PYTHON" scripts/bench-report.py render --results "$RESULTS"
fi
