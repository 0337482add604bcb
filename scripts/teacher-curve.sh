#!/usr/bin/env bash
# Quality of the latent-diffusion teacher against its training time: every kept checkpoint of a
# run (`coalesce train latent-diffusion --keep-checkpoints-every N` writes them as
# <out>/checkpoints/<step>/checkpoint.safetensors; pass SNAPS=<out>/checkpoints) is turned into a servable model (its EMA weights, by
# resuming the run at its own last step, which trains nothing and writes the model) and scored
# at 50 steps (guidance 2 by default), in both feature networks. One row per checkpoint goes to OUT (TSV):
#   step  wall_s  cpu_s  fid_a  kid_a  kid_a_se  fid_b  kid_b  kid_b_se  class_acc_a  recall
# KID is unbiased at any n, so COUNT can stay small (FID at small n only ranks points of one curve).
# Steps already in OUT are kept, so it can run while the training goes on.
# A run that continued a trained teacher (`--init-from WEIGHTS`) needs INIT_FROM=WEIGHTS here too,
# so that each point gets that teacher's autoencoder and text encoder; a run with another network
# needs its options in TRAIN_ARGS (e.g. TRAIN_ARGS="--channels 96,192"). GUIDANCE (default 2) and
# INTERVAL (lo,hi: guidance only at those noise fractions, as a config.json's guidance_interval;
# default every step) set how each point is sampled.
# Usage: scripts/teacher-curve.sh SNAPS [OUT] (COUNT=500, COALESCE=.build/release/coalesce, INIT_FROM=,
#        TRAIN_ARGS=, GUIDANCE=2, INTERVAL=)
set -euo pipefail
cd "$(dirname "$0")/.."
SNAPS=${1:?usage: teacher-curve.sh SNAPS [OUT]}
OUT=${2:-bench/teacher-curve.tsv}
COUNT=${COUNT:-500}
COALESCE=${COALESCE:-.build/release/coalesce}
TRAIN_ARGS=${TRAIN_ARGS:-}
GUIDANCE=${GUIDANCE:-2}
INTERVAL=${INTERVAL:-}
MODELS=$(mktemp -d)
trap 'rm -rf "$MODELS"' EXIT
[ -s "$OUT" ] || printf "step\twall_s\tcpu_s\tfid_a\tkid_a\tkid_a_se\tfid_b\tkid_b\tkid_b_se\tclass_acc_a\trecall\n" > "$OUT"
for dir in "$SNAPS"/*/; do
    ckpt="$dir/checkpoint.safetensors"
    [ -f "$ckpt" ] || continue
    done_step=$(basename "$dir")
    if cut -f1 "$OUT" | grep -qx "$done_step"; then continue; fi
    meta=$(python3 -c 'import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]; m = json.loads(f.read(n))["__metadata__"]
print(m["step"], m.get("elapsed_seconds", "0"), m.get("cpu_seconds", "0"))' "$ckpt")
    read -r step wall cpu <<<"$meta"
    name="teacher-$step"
    mkdir -p "$MODELS/$name"
    cp "$ckpt" "$MODELS/$name/checkpoint.safetensors"
    # shellcheck disable=SC2086
    "$COALESCE" train latent-diffusion --steps "$step" --seed 1 --sample-every 0 --out "$MODELS/$name" $TRAIN_ARGS \
        ${INIT_FROM:+--init-from "$INIT_FROM"} > "$MODELS/$name.log" 2>&1
    rm -f "$MODELS/$name/checkpoint.safetensors"
    if [ -n "$INTERVAL" ]; then
        echo "{\"backend\": \"latent-diffusion\", \"weights\": \"latent-diffusion.safetensors\", \"guidance_interval\": [$INTERVAL]}" \
            > "$MODELS/$name/config.json"
    fi
    "$COALESCE" eval --models-dir "$MODELS" --model "$name" --steps 50 --guidance "$GUIDANCE" --count "$COUNT" --batch 64 \
        --no-reference --json --quiet > "$MODELS/$name.json"
    python3 - "$MODELS/$name.json" "$step" "$wall" "$cpu" >> "$OUT" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["generated"]
b = r["second"]
print("\t".join([sys.argv[2], sys.argv[3], sys.argv[4]] + ["%.4f" % v for v in (
    r["fid"], 1000 * r["kid"]["value"], 1000 * r["kid"]["standard_error"], b["fid"], 1000 * b["kid"]["value"],
    1000 * b["kid"]["standard_error"], r["class_accuracy"], r["recall"])]))
PY
    echo "teacher-curve: step $step done ($(tail -1 "$OUT" | cut -f4-8))" >&2
done
