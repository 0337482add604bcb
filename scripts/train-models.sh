#!/usr/bin/env bash
# Retrains the committed default models from scratch with recorded seeds (models/README.md):
#   1. models/coalescer-v1: the first coalescer, the seed's method with searched targets (its own
#      small autoencoder, 48 whitened dims, MLP);
#   2. the first latent space, KL weight 0.005 ($M/autoencoder-kl005, not kept: the models trained on
#      it carry it): encoder + decoder, then the decoder alone against a patch discriminator;
#   3. models/coalescer-v2 on it: the residual net by regression on searched targets, then
#      adversarial fine-tuning of the same net with a latent discriminator and classifier;
#   4. on it, a teacher trained with min-SNR-5 loss weighting (not kept) and
#   5. its slimmed student (distilled to 4 steps, sampled at 8 for the pairs the coalescers learn; not kept);
#   6. models/coalescer-v3: 60,000 noise-to-latent pairs of that student at 8 steps (teacher coupling,
#      with the points of each sampling trajectory), a 4.9M-parameter residual net on the pairs' noise
#      and on searched targets, then adversarial fine-tuning; its net stored as float16
#      (scripts/half-weights.py) to stay under 20 MiB;
#   6b. models/coalescer (the fourth version): the same net on the same pairs, half of the starts a point
#      of the pair's trajectory, no search; 6000 regression steps, then adversarial fine-tuning;
#   7. models/classifier-p (the network of the autoencoder's perceptual term) and models/autoencoder:
#      the latent space the bundled teacher works in (KL weight 0.0025; the first two stages as in 2,
#      then the decoder alone with a perceptual term in classifier-p); models/latent-diffusion on it (the 50-step teacher: UNet on the latent grid,
#      v-prediction, CFG; 12,000 steps, 47 minutes alone on both cores), served with guidance 3 only
#      at noise fractions up to 0.7; models/distilled-unet, its full-size student distilled with the
#      guidance interval 32 -> 16 -> 8 -> 4 steps (16 minutes), served at 4, and models/distilled-unet-2step,
#      that student one phase further (4 -> 2, 5 minutes); then MiniLM for the teacher and the student:
#      models/latent-diffusion-minilm, models/distilled-unet-minilm;
#   8. models/nested-unet: the pixel-space nested UNet, 1500 CPU-s of the 14x14 inner network, then
#      2000 CPU-s nested (about 44 minutes alone), with the sampling settings of its config.json, and
#      models/pixel-unet, its plain baseline (one UNet at 28x28) for the same 3500 CPU-s.
# About 8.5 hours on a 2-core machine. Usage: scripts/train-models.sh [MODELS_DIR] (default models)
set -euo pipefail
cd "$(dirname "$0")/.."
M="${1:-models}"
swift build -c release --product coalesce
swift build -c release --product CoalescerBackend
swift build -c release --product LatentDiffusionBackend
swift build -c release --product DistilledUnetBackend
swift build -c release --product NestedUnetBackend
C=.build/release/coalesce
LOG="${LOG:-/tmp/train-models.log}"
start=$(date +%s)
{
$C train coalescer --out "$M/coalescer-v1" --seed 1
AE1="$M/autoencoder-kl005"
$C train autoencoder --epochs 7 --seed 11 --out "$AE1"
$C train autoencoder --init-from "$AE1" --decoder-only --adversarial-weight 0.1 --adversarial-start 0 \
    --lr 5e-4 --epochs 1 --max-steps 600 --seed 12 --out "$AE1"
V2=(--autoencoder "$AE1" --pca-dim 128 --hidden 512 --blocks 3 --level-input --probe-per-class 0 --seed 1)
$C train coalescer "${V2[@]}" --renoise 0.5 --steps 3000 --out "$M/coalescer-v2-regression"
$C train coalescer "${V2[@]}" --renoise 0.8 --init-net "$M/coalescer-v2-regression/coalescer.safetensors" --steps 0 \
    --adversarial-steps 1500 --second-step-level 0.5 --classifier-weight 0.3 --out "$M/coalescer-v2"
rm -rf "$M/coalescer-v2-regression"
# The MiniLM text encoder (models/minilm, made by scripts/fetch-minilm.sh) for both: retrieval over
# their training captions, nothing retrained.
$C train text-encoder --from "$M/coalescer-v1" --out "$M/coalescer-v1-minilm" --minilm "$M/minilm" --retrieval
$C train text-encoder --from "$M/coalescer-v2" --out "$M/coalescer-v2-minilm" --minilm "$M/minilm" --retrieval
# The first latent space's teacher (only for its student, whose pairs the coalescers learn), min-SNR-5.
$C train latent-diffusion --autoencoder "$AE1" --steps 12000 --seed 1 --min-snr-gamma 5 --sample-every 0 --out "$M/latent-diffusion-min-snr"
$C train distilled-unet --teacher "$M/latent-diffusion-min-snr" --layers-per-level 1 --mid-attention 0 --teacher-steps 32 --final-steps 4 --steps-per-phase 700 --lr 3e-4 --seed 3 --out "$M/distilled-unet-min-snr"
rm -rf "$M/latent-diffusion-min-snr"
# The pairs with their trajectories (the pairs themselves are the same bytes without them).
PAIRS="$M/coalescer-pairs.safetensors"
$C train teacher-pairs --teacher "$M/distilled-unet-min-snr" --steps 8 --guidance 2 --count 60000 --seed 11 \
    --trajectory-every 1 --chunk 6000 --out "$PAIRS"
V3=(--reuse "$M/coalescer-v2/coalescer.safetensors" --pca-dim 128 --hidden 768 --blocks 4 --level-input --renoise 0.5
    --probe-per-class 0 --prior-fraction 0.8 --teacher-pairs "$PAIRS" --seed 1)
$C train coalescer "${V3[@]}" --steps 3000 --out "$M/coalescer-v3-regression"
$C train coalescer "${V3[@]}" --init-net "$M/coalescer-v3-regression/coalescer.safetensors" --steps 0 \
    --adversarial-steps 1500 --classifier-weight 0.1 --out "$M/coalescer-v3"
echo '{"backend": "coalescer", "weights": "coalescer.safetensors", "default_steps": 1}' > "$M/coalescer-v3/config.json"
python3 scripts/half-weights.py "$M/coalescer-v3/coalescer.safetensors" net.
V4=(--reuse "$M/coalescer-v2/coalescer.safetensors" --pca-dim 128 --hidden 768 --blocks 4 --level-input
    --probe-per-class 0 --teacher-pairs "$PAIRS" --renoise-path variance_preserving --trajectory-fraction 0.5
    --renoise 0.711 --prior-fraction 1.0 --seed 1)
$C train coalescer "${V4[@]}" --steps 3000 --out "$M/coalescer-v4-regression"
$C train coalescer "${V4[@]}" --init-net "$M/coalescer-v4-regression/coalescer.safetensors" --steps 3000 --lr 5e-4 \
    --out "$M/coalescer-v4-regression2"
$C train coalescer "${V4[@]}" --init-net "$M/coalescer-v4-regression2/coalescer.safetensors" --steps 0 \
    --adversarial-steps 1500 --classifier-weight 0.3 --out "$M/coalescer"
echo '{"backend": "coalescer", "weights": "coalescer.safetensors", "default_steps": 2, "renoise_levels": [0.711, 0.562, 0.391]}' \
    > "$M/coalescer/config.json"
python3 scripts/half-weights.py "$M/coalescer/coalescer.safetensors" net.
rm -rf "$M/coalescer-v3-regression" "$M/coalescer-v4-regression" "$M/coalescer-v4-regression2" "$PAIRS" \
    "$M/distilled-unet-min-snr" \
    "$M/coalescer-v3/autoencoder.safetensors" "$M/coalescer-v3/autoencoder.json" \
    "$M/coalescer/autoencoder.safetensors" "$M/coalescer/autoencoder.json"
# The network of the decoders' perceptual term (no evaluation scores with it).
$C train classifier --channels 32,64,64,128 --strides 1,2,2,1 --feature-dim 256 --pool average \
    --feature-layer post_activation --epochs 8 --max-shift 1 --photometric 0.4 --seed 11 --out "$M/classifier-p"
rm -rf "$AE1"
# The bundled latent space (KL weight 0.0025: it carries more of each image, BENCHMARKS.md "The latent's
# rate"), the same three stages; the teacher on it and its full-size student.
$C train autoencoder --kl-weight 0.0025 --epochs 7 --seed 11 --out "$M/autoencoder"
$C train autoencoder --init-from "$M/autoencoder" --decoder-only --adversarial-weight 0.1 --adversarial-start 0 \
    --lr 5e-4 --epochs 1 --max-steps 600 --seed 12 --out "$M/autoencoder"
$C train autoencoder --init-from "$M/autoencoder" --decoder-only --perceptual "$M/classifier-p" --perceptual-weight 0.1 \
    --adversarial-weight 0.1 --adversarial-start 0 --lr 5e-4 --epochs 4 --max-steps 3000 --seed 12 --out "$M/autoencoder"
$C train latent-diffusion --autoencoder "$M/autoencoder" --steps 12000 --seed 1 --sample-every 2000 --out "$M/latent-diffusion"
rm -rf "$M/latent-diffusion/checkpoint.safetensors" "$M/latent-diffusion/checkpoints"
# Served with guidance 3 at noise fractions up to 0.7 only (BENCHMARKS.md, "The teacher and its
# full-size student on the KL-0.0025 latent"); latent-diffusion-minilm copies this config.
echo '{"backend": "latent-diffusion", "weights": "latent-diffusion.safetensors", "default_guidance": 3, "guidance_interval": [0, 0.7]}' > "$M/latent-diffusion/config.json"
$C train distilled-unet --teacher "$M/latent-diffusion" --teacher-steps 32 --final-steps 4 --steps-per-phase 700 --lr 3e-4 --seed 3 \
    --guidance-interval 0,0.7 --guidance 3 --out "$M/distilled-unet"
echo '{"backend": "distilled-unet", "weights": "distilled-unet.safetensors", "default_guidance": 4, "default_steps": 4, "guidance_interval": [0, 0.7]}' > "$M/distilled-unet/config.json"
$C train distilled-unet --teacher "$M/distilled-unet/distilled-unet.safetensors" --teacher-steps 4 --final-steps 2 --steps-per-phase 700 \
    --lr 3e-4 --seed 3 --guidance-interval 0,0.7 --out "$M/distilled-unet-2step"
echo '{"backend": "distilled-unet", "weights": "distilled-unet.safetensors", "default_guidance": 4, "default_steps": 2, "guidance_interval": [0, 0.7]}' > "$M/distilled-unet-2step/config.json"
$C train text-encoder --from "$M/latent-diffusion" --out "$M/latent-diffusion-minilm" --minilm "$M/minilm" --retrieval
$C train text-encoder --from "$M/distilled-unet" --out "$M/distilled-unet-minilm" --minilm "$M/minilm" --retrieval
$C train nested-unet --out "$M/nested-unet" --seed 1 --inner-layers 1 --batch-size 32 --phase1-steps 100000 \
    --phase2-steps 100000 --phase1-seconds 1500 --phase2-seconds 2000 --snapshot-every 700 --guidance 1.5
echo '{"backend": "nested-unet", "weights": "nested-unet.safetensors", "default_guidance": 3, "guidance_interval": [0, 0.7], "clip_recompute_noise": true}' > "$M/nested-unet/config.json"
rm -rf "$M/nested-unet/checkpoint-phase1.safetensors" "$M/nested-unet/checkpoint-phase2.safetensors" "$M/nested-unet/snapshots"
# Its plain baseline at the same budget: one UNet at 28x28.
$C train nested-unet --plain --outer-channels 32,64,128 --outer-attention 0,0,1 --outer-layers 1 --out "$M/pixel-unet" --seed 1 \
    --batch-size 32 --phase2-steps 100000 --phase2-seconds 3500 --snapshot-every 700 --guidance 1.5
echo '{"backend": "nested-unet", "weights": "nested-unet.safetensors", "default_guidance": 3, "guidance_interval": [0, 0.7], "clip_recompute_noise": true}' > "$M/pixel-unet/config.json"
rm -rf "$M/pixel-unet/checkpoint-phase2.safetensors" "$M/pixel-unet/snapshots"
} 2>&1 | tee "$LOG"
echo "default models retrained in $(( $(date +%s) - start ))s -> $M/{coalescer-v1,autoencoder,coalescer-v2,coalescer-v1-minilm,coalescer-v2-minilm,latent-diffusion,distilled-unet,distilled-unet-2step,coalescer-v3,coalescer,classifier-p,latent-diffusion-minilm,distilled-unet-minilm,nested-unet,pixel-unet}"
