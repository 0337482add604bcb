#!/usr/bin/env bash
# Latency cost of backend isolation: the same coalescer requests against two daemons started side
# by side, one with --isolation in-process and one with --isolation process (the default), measured
# one after the other in one run with `coalesce bench remote` (client threads in one process,
# closed loop). ROUNDS alternates the two daemons that many times (default 2).
#   bash scripts/bench-isolation.sh [SECONDS_PER_ROW] [MODEL]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
SECONDS_PER_ROW=${1:-5}
MODEL=${2:-coalescer}
ROUNDS=${ROUNDS:-2}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

start() {  # start ISOLATION PORT
    "$BIN/coalesced" --models models --plugins "$BIN" --load "$MODEL" --endpoint "tcp://127.0.0.1:$2" \
        --admin-endpoint "" --isolation "$1" 2>"$tmp/$1.log" &
    pids+=($!)
    for _ in $(seq 200); do grep -q '\] ready' "$tmp/$1.log" && return; sleep 0.1; done
    echo "coalesced --isolation $1 did not start:" >&2; cat "$tmp/$1.log" >&2; exit 1
}
start in-process 5681
start process 5682
echo "# $(date -u +%FT%TZ) model=$MODEL seconds=$SECONDS_PER_ROW load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
    for iso in in-process process; do
        port=$([ "$iso" = in-process ] && echo 5681 || echo 5682)
        echo "## round $r, --isolation $iso"
        "$BIN/coalesce" bench remote --endpoint "tcp://127.0.0.1:$port" --model "$MODEL" --clients 1 16 \
            --seconds "$SECONDS_PER_ROW"
    done
done
