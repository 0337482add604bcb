#!/usr/bin/env bash
# `make bench-judge`: does our yardstick rank models the way an independent judge does?
#
# An independent judge (a Fashion-MNIST classifier trained separately, whose features we do not
# share) scored ten rows at 1000 images each: real training images, the autoencoder's
# reconstructions, and eight (model, steps) rows of the models bundled at the time. Those weights are
# in git history; this script takes each from the commit that holds it (checked by sha256, the
# prefixes scripts/bench-report.py keeps in JUDGE), generates the same rows at the same n with the
# model-directory settings the models were served with then, keeps the images, scores them in every
# feature network given, and prints how often each network's FID and KID order a pair of rows the
# way the judge's FID does (scripts/bench-report.py judge).
#
#   OUT=/tmp/judge-check NETS="A=models/classifier B=models/classifier-b" scripts/judge-check.sh
#
# The images are generated once (OUT/images/ROW, reused when present); a network given later is
# scored on the same images. About 8 minutes on the 2 cores, 3.5 of them the teacher at 50 steps.
set -euo pipefail
cd "$(dirname "$0")/.."
C=${COALESCE:-.build/release/coalesce}
OUT=${OUT:-/tmp/coalesce-judge-check}
NETS=${NETS:-"A=models/classifier B=models/classifier-b"}
COUNT=1000
M="$OUT/models"
mkdir -p "$M" "$OUT/images" "$OUT/scores"

# model  commit-with-the-judged-weights  weights-sha256-prefix  commit-of-its-served-config.json
take() {
    local model=$1 commit=$2 sha=$3 config_commit=$4 file=$5
    if [ ! -f "$M/$model/$file" ]; then
        mkdir -p "$M/$model"
        git show "$commit:models/$model/$file" > "$M/$model/$file"
        git show "$config_commit:models/$model/config.json" > "$M/$model/config.json"
    fi
    local got
    got=$(sha256sum "$M/$model/$file" | cut -c1-16)
    [ "$got" = "$sha" ] || { echo "judge-check: $model weights are $got, the judge scored $sha" >&2; exit 1; }
}
take latent-diffusion 2eb5910 6ec8108c33abaaad 5f03259^ latent-diffusion.safetensors
take distilled-unet 78417d9 2dd9e326752d50a5 d849ab2^ distilled-unet.safetensors
take nested-unet 9e8fa25 fdd3937b692366ab bedf898^ nested-unet.safetensors
take coalescer-v3 300e7bb 09399211c20d33f6 300e7bb coalescer.safetensors
[ -d "$M/autoencoder" ] || { mkdir -p "$M/autoencoder"; git archive 6ee1f44 models/autoencoder | tar -x -C "$OUT"; }

ROWS="real-train:1 reconstruction:1 latent-diffusion:50 latent-diffusion:8 distilled-unet:16 distilled-unet:8 distilled-unet:4 coalescer-v3:1 coalescer-v3:2 nested-unet:16"
for row in $ROWS; do
    m=${row%%:*}; s=${row#*:}; d="$OUT/images/$m-$s"
    [ -f "$d/labels.txt" ] && continue
    echo "$(date +%T) generating $m at $s steps ($COUNT images)" >&2
    "$C" eval --models-dir "$M" --model "$m" --steps "$s" --count $COUNT --batch 50 --no-reference --quiet \
        --second-classifier none --save-images "$d" > /dev/null
done
for net in $NETS; do
    name=${net%%=*}; path=${net#*=}
    mkdir -p "$OUT/scores/$name"
    for row in $ROWS; do
        m=${row%%:*}; s=${row#*:}
        "$C" eval --images "$OUT/images/$m-$s" --count $COUNT --no-reference --json --quiet --classifier "$path" \
            --second-classifier none > "$OUT/scores/$name/$m-$s.json"
    done
done
python3 scripts/bench-report.py judge "$OUT/scores"
