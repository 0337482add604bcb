#!/usr/bin/env bash
# `make bench-peers`: the bundled models' denoisers timed in Coalesce, in PyTorch eager and in ONNX
# Runtime on the same machine in one run, so that every speed claim against them is a ratio
# measured side by side.
#
# The cases: the denoisers of latent-diffusion, distilled-unet and nested-unet, and for the
# coalescer one jump of its net and the decode of the end point (a 1-step image; 2 steps are one
# more net call).
#
# 1. A Python venv under .build-peers/venv with torch, onnx, onnxruntime, numpy and safetensors
#    from PyPI (made once; about 5 GB, as PyPI's torch wheel brings the CUDA libraries).
# 2. Same function first: for each model, `coalesce bench unet --dump` writes seeded inputs and
#    Coalesce's output at batch 2; scripts/peers/unet_peer.py builds the network in PyTorch from
#    the config in the weights file, loads the same weights, checks the parameter count and the
#    output (relative difference at most 1e-4), exports it to ONNX (opset 17, dynamic batch) and
#    checks ONNX Runtime's output too. Any disagreement stops the run.
# 3. sgemm 1024^3 at the same threads (OpenBLAS through `coalesce bench ops --sgemm-only`, and
#    torch.mm), and the FMA peak (fused multiply-adds on registers on every thread, the same
#    `coalesce bench ops` call): the ceiling the GFLOP/s are read against.
# 4. For each case, ROUNDS rounds; each round runs Coalesce, PyTorch and ONNX Runtime (training
#    cases: Coalesce and PyTorch) one after the other, in an order that rotates from round to round,
#    each a fresh process timing calls for ROUND_SECONDS after one warm-up call.
# 5. scripts/peers/report.py pools the rounds: bench/peers/latest.json and a Markdown table on stdout.
#
# Settings (environment): CASES ("model:batch" or "model:batch:train", space-separated), ROUNDS (3),
# ROUND_SECONDS (5), THREADS (2, for all three), SGEMM_SECONDS (2), OUT (bench/peers/latest.json). Run it on a quiet
# machine: anything else running changes the times of all three.
set -euo pipefail
cd "$(dirname "$0")/../.."

SWIFT=${SWIFT:-swift}
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.build-peers/venv}
CASES=${CASES:-"latent-diffusion:2 latent-diffusion:128 distilled-unet:2 distilled-unet:128 nested-unet:2 nested-unet:64 coalescer:1 coalescer:64 latent-diffusion:128:train"}
ROUNDS=${ROUNDS:-3}
ROUND_SECONDS=${ROUND_SECONDS:-5}
THREADS=${THREADS:-2}
SGEMM_SECONDS=${SGEMM_SECONDS:-2}
OUT=${OUT:-bench/peers/latest.json}
RUN=.build-peers/run
PEER="$VENV/bin/python scripts/peers/unet_peer.py"
COALESCE=.build/release/coalesce

log() { echo "bench-peers: $*" >&2; }

if ! "$VENV/bin/python" -c "import torch, onnx, onnxruntime, numpy, safetensors" 2>/dev/null; then
    log "creating $VENV (torch, onnx, onnxruntime, numpy, safetensors from PyPI)"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q torch onnx onnxruntime numpy safetensors
fi
$SWIFT build -c release --product coalesce >&2

export COALESCE_THREADS=$THREADS
load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
    log "warning: load average $load: other processes are running, and they slow the three runtimes unequally"
    log "  (PyTorch's OpenMP threads wait on each other when a core is taken); the times will not be comparable"
fi
rm -rf "$RUN"
mkdir -p "$RUN/onnx"

models=$(for c in $CASES; do echo "${c%%:*}"; done | awk '!seen[$0]++')
for m in $models; do
    log "checking $m: Coalesce, PyTorch and ONNX Runtime compute the same function"
    "$COALESCE" bench unet --model "$m" --batch 2 --dump "$RUN/dump-$m" --dump-only >&2
    $PEER check --dump "$RUN/dump-$m" --onnx "$RUN/onnx/$m.onnx" --threads "$THREADS" --json "$RUN/check-$m.json" >&2
done

log "sgemm and FMA peak at $THREADS threads"
"$COALESCE" bench ops --sgemm-only --seconds "$SGEMM_SECONDS" > "$RUN/sgemm-coalesce.txt"
$PEER sgemm --seconds "$SGEMM_SECONDS" --threads "$THREADS" --json "$RUN/sgemm-torch.json" >&2

"$VENV/bin/python" - "$RUN/env.json" "$THREADS" "$ROUNDS" "$ROUND_SECONDS" "$load" <<'PY'
import json, platform, sys, time
import onnxruntime, torch
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
json.dump({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu": cpu, "threads": int(sys.argv[2]),
           "rounds": int(sys.argv[3]), "seconds_per_round": float(sys.argv[4]), "load_average_at_start": float(sys.argv[5]),
           "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}, open(sys.argv[1], "w"))
PY

: > "$RUN/cases.txt"
for c in $CASES; do
    IFS=: read -r model batch mode <<< "$c"
    mode=${mode:-inference}
    echo "$model $batch $mode" >> "$RUN/cases.txt"
    name="$model-b$batch-$mode"
    train=(); [ "$mode" = train ] && train=(--train)
    runtimes=(coalesce torch ort); [ "$mode" = train ] && runtimes=(coalesce torch)
    for ((r = 0; r < ROUNDS; r++)); do
        n=${#runtimes[@]}
        for ((k = 0; k < n; k++)); do
            rt=${runtimes[$(((k + r) % n))]}
            json="$RUN/$name.$rt.$r.json"
            case $rt in
                coalesce) "$COALESCE" bench unet --model "$model" --batch "$batch" "${train[@]}" \
                              --seconds "$ROUND_SECONDS" --json "$json" >&2 ;;
                torch) $PEER time --runtime torch --model "$model" --batch "$batch" "${train[@]}" \
                           --seconds "$ROUND_SECONDS" --threads "$THREADS" --json "$json" >&2 ;;
                ort) $PEER time --runtime ort --onnx "$RUN/onnx/$model.onnx" --model "$model" --batch "$batch" \
                         --seconds "$ROUND_SECONDS" --threads "$THREADS" --json "$json" >&2 ;;
            esac
        done
    done
done

"$VENV/bin/python" scripts/peers/report.py "$RUN" "$OUT"
