#!/usr/bin/env python3
"""Stores the float32 tensors of a safetensors file whose names start with the given prefixes as
float16, in place (metadata kept). Coalesce reads F16 tensors exactly into float32, so a model
converted this way loads unchanged; its values are the float16-rounded weights, so score the
converted file (`coalesce eval`), not the original.

Used for models whose float32 weights would pass the repository's 20 MiB limit per file
(models/coalescer: its 4.9M-parameter net). Usage: half-weights.py FILE PREFIX [PREFIX...]
"""
import os
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, prefixes = sys.argv[1], tuple(sys.argv[2:])
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    worst, converted = 0.0, 0
    for k, v in tensors.items():
        if k.startswith(prefixes) and v.dtype == np.float32:
            h = v.astype(np.float16)
            if not np.all(np.isfinite(h)):
                sys.exit("half-weights: %s does not fit float16" % k)
            scale = float(np.abs(v).max()) or 1.0
            worst = max(worst, float(np.abs(h.astype(np.float32) - v).max()) / scale)
            tensors[k] = h
            converted += 1
    if converted == 0:
        sys.exit("half-weights: no float32 tensor starts with %s" % (prefixes,))
    tmp = path + ".tmp"
    save_file(tensors, tmp, metadata=meta)
    os.replace(tmp, path)
    print("half-weights: %d tensors of %s as float16 (largest rounding %.2g of a tensor's max |value|), %.1f MiB"
          % (converted, path, worst, os.path.getsize(path) / 2**20))


if __name__ == "__main__":
    main()
